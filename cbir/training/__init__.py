"""Fine-tuning encoders with verification losses: Siamese (contrastive) and triplet networks."""
