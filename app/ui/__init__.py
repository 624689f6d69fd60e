"""The Gradio playground: per-session state, click prompts, callbacks (handlers) and the page."""
