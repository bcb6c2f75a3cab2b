"""AniMatrix Studio's browser UI (Gradio) and the services it needs.

Kept empty on purpose: `import app` must stay cheap (no Gradio, no torch), so the launcher can
check its flags and exit before anything heavy loads. `app.main` is the entry point; `app.ui`
assembles the tabs.
"""
