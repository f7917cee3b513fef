"""Text analysis shared by translate and evaluate: verbatim spans (code, URLs, LaTeX) and Korean speech level."""
