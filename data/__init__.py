"""Data sets and what turns their stored examples into model inputs.

`build_dataset(config.data, split)` loads CIFAR-10, DIGITS, a 2-D toy set, or your own image
folder / `.npz` / `.npy` arrays (with class labels where the set has them; large sets of your own
are streamed); `describe` tells what a set is without loading it; `BatchOrder` fixes the order
of training batches (`data.loader` reads them, in DataLoader workers when streamed); `DataTransform`
(from `build_transform(config.data)`) scales, flips and dequantizes, and maps model outputs back
to uint8 images.
"""
from data.datasets import (DATASETS, IMAGE_SETS, LABELED_DATASETS, NUM_CLASSES, SPLITS,
                           USER_SETS, DataInfo, Dataset, DatasetError, build_dataset, describe)
from data.order import BatchOrder
from data.transforms import (DataTransform, build_transform, random_flip, scale_images,
                             to_uint8_images)

__all__ = ["Dataset", "DatasetError", "build_dataset", "describe", "DataInfo", "USER_SETS",
           "DATASETS", "IMAGE_SETS",
           "LABELED_DATASETS", "NUM_CLASSES", "SPLITS", "BatchOrder", "DataTransform",
           "build_transform", "scale_images", "to_uint8_images", "random_flip"]
