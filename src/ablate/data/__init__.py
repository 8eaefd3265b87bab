"""Data (conf/data, conf/aug): one source per dataset, the verified cache, the datamodule and its
loaders, and augmentation on the CPU (albumentations) or batched on the device."""
