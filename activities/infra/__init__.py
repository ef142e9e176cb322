"""Activities that observe the host and the network it runs on."""
