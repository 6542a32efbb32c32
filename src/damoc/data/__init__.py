"""The data level: filtering (``damoc.data.filters``), embeddings (``damoc.data.embed``) and token
compression (``damoc.data.compress``)."""
