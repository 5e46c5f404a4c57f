"""TF-Hub modules of experts: export (`export`, `collection`) and loading (`load`).

Modules: `module` (the saved objects), `copies` (export copies), `metadata` (assets JSON),
`index` (collection index), `verify` (output checks), `tfhub` (tensorflow_hub import).
"""
