"""The generation core: requests, models, loading, memory, generation, export, PKS and presets.

Nothing here imports rating, reward, training, curation, storage or the UI (an import contract
checks it); those packages build on this one.
"""
