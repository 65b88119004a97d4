"""Models built on scg (the VAE, IWAE and a discrete-latent model arrive with later work)."""
