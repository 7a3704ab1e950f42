"""Evaluation: bits/dim on a data split, sample generation, image grids and FID/IS."""
