"""Multimodal preprocessing in front of the language core (audio, images, documents, video)."""
