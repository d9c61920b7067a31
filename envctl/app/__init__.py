"""Use cases: session, inputs, executor, plan, apply, locking, validate, drift. They drive the
adapters (repo, terraform, kube) through core values and never format output (views do).
"""
