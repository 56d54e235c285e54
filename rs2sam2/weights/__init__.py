"""Model weights on disk and on the Hub: where a model id's files are, reading and checking state dicts,
converting other checkpoints to our names, and model folders (load, save, compact, push, model card).

* :mod:`~rs2sam2.weights.sources`: ONE resolver of a model id (folder, Hub id, subfolder, revision, token,
  offline cache) for the weights and the tokenizer alike;
* :mod:`~rs2sam2.weights.state_dict` (with :mod:`~rs2sam2.weights.checkpoint_scan`): read, unwrap, check;
* :mod:`~rs2sam2.weights.convert`: official release → ours; :mod:`~rs2sam2.weights.base_checkpoints`:
  SAM2 / BEiT-3 base checkpoints;
* :mod:`~rs2sam2.weights.hub`: model folders, taking the model class as an argument;
  :mod:`~rs2sam2.weights.compact`: packages without the frozen SAM2 weights;
  :mod:`~rs2sam2.weights.model_card`: their ``README.md``;
* :mod:`~rs2sam2.weights.pretrained`: the public :class:`~rs2sam2.RS2SAM2` (model + Hub integration);
* :mod:`~rs2sam2.weights.bundled`: where the bundled default model is.
"""
