"""Chat vector: add (instruct - base) to a Korean-trained Llama 3, exactly, streamed, in bounded memory."""
from koblla.chat_vector.merge import apply_chat_vector

__all__ = ["apply_chat_vector"]
