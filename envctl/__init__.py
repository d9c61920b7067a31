"""envctl: converge Terraform stacks and Kubernetes layers of one environment from a Git repository."""

__version__ = "0.1.0"
