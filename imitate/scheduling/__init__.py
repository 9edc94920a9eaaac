"""What each workflow job asks of the machine that runs it: memory, wall time and GPUs (Snakemake resources)."""
