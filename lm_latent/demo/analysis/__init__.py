"""Study-only scripts that read the demo's adapters: loss split, what the codes hold, run comparisons."""
