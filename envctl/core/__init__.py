"""The pure core of envctl: values, graph, schedule and policies. Nothing here does I/O."""
