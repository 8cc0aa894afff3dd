"""Train a cascade from a NumPy matrix of teacher embeddings with the Trainer, no command line involved.

python examples/train_from_numpy.py path/to/embeddings.npy models/my-cascade
"""

import sys

import numpy as np
from transformers import TrainingArguments

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.trainer import CascadeTrainer, embeddings_dataset, split_embeddings


embeddings = np.load(sys.argv[1])  # (rows, teacher dim), e.g. all-MiniLM-L6-v2's 384
train, validation = split_embeddings(embeddings, val_split=0.1, seed=42)
cascade = CascadeModel(CascadeConfig(input_dim=embeddings.shape[1], target_dims=[256, 64, 32]))
cascade.init_from_pca(train)  # every head starts at the PCA of the training rows
args = TrainingArguments(
    sys.argv[2], num_train_epochs=10, per_device_train_batch_size=min(1024, len(train)), learning_rate=1e-3,
    eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
    metric_for_best_model="dim_64_overlap@10",  # a ranking metric of CascadeTrainer's evaluation
)  # fmt: skip
trainer = CascadeTrainer(
    model=cascade, args=args, train_dataset=embeddings_dataset(train), eval_dataset=embeddings_dataset(validation)
)
trainer.train()
cascade.save_pretrained(f"{sys.argv[2]}/best_model")  # config.json, model.safetensors and the model card
print(trainer.evaluate())
