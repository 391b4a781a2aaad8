"""One module per endpoint family: what the endpoint does once its request is admitted."""
