"""Renderers: turn core values into text, JSON, Markdown, DOT, Mermaid or HTML. Views never compute."""
