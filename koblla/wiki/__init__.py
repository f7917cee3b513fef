"""Korean Wikipedia dump -> clean article text (the extract_wiki stage, its sample dump, the download helper)."""
