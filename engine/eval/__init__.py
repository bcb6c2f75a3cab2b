"""Evaluation: a prompt suite x seeds x systems, generated through the job runner and scored from
pixels against the clips' PKS tags (docs/evaluation.md)."""
