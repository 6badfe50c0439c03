"""The lab: find where a model fails (scoring, history, regions, slices) and act on it (forks, merges, routing)."""
