"""Datasets: unpaired and paired folders, the background batch pipeline, downloads, edge maps, the local cache."""
