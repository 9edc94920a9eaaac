"""Pages of the Snakemake report that the stages' own outputs do not give: counts, provenance, run times."""
