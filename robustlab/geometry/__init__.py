"""Latent geometry of zoo models: faiss kNN search, per-class density, Li and graph convexity.

- `knn_search`: exact (flat) or approximate (HNSW / IVF) faiss search behind one function;
- `class_density`: mean distance to the k nearest same-class neighbours, same-class fraction, intra/inter
  distance ratio per class;
- `li_convexity`: mixes of same-class latents classified by the head alone (Li, ICASSP 2022);
- `graph_convexity`: shortest paths on the kNN graph that stay inside the class;
- `model_geometry` / `zoo_geometry`: all of them for a model on a dataset split, one JSON-able result.

Example:
    >>> from robustlab.geometry import zoo_geometry
    >>> result = zoo_geometry("fusion_late.base_synthav", "test", max_items=256)
    >>> result.summary()["fused"]["li_convexity"]
"""

from .analysis import EmbeddingGeometry, GeometryConfig, GeometryResult, model_geometry, zoo_geometry
from .convexity import (
    ClassGraphConvexity,
    ClassLiConvexity,
    GraphConvexityResult,
    LiConvexityResult,
    graph_convexity,
    graph_convexity_on_graph,
    knn_graph,
    li_convexity,
)
from .density import ClassDensity, DensityResult, class_density, membership
from .embeddings import Embeddings, extract_embeddings
from .knn import KNNResult, knn_search

__all__ = [
    "ClassDensity", "ClassGraphConvexity", "ClassLiConvexity", "DensityResult", "EmbeddingGeometry",
    "Embeddings", "GeometryConfig", "GeometryResult", "GraphConvexityResult", "KNNResult",
    "LiConvexityResult",
    "class_density", "extract_embeddings", "graph_convexity", "graph_convexity_on_graph", "knn_graph",
    "knn_search", "li_convexity", "membership", "model_geometry", "zoo_geometry",
]
