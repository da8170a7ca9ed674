"""Matplotlib renderings of heart meshes (LV cavity, LV epicardium, RV) as shaded triangle collections."""
from __future__ import annotations

import numpy as np
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from stages.common.report import plt

COLOURS = ("#c0392b", "#e8a87c", "#2e86c1", "#7f8c8d")  # by connected component; the epicardium is drawn translucent
ALPHAS = (0.9, 0.25, 0.6, 0.5)


def draw_mesh(axis, vertices: np.ndarray, faces: np.ndarray, component: np.ndarray, limits: tuple[np.ndarray, np.ndarray]) -> None:
    """One frame on a 3D axis, faces coloured by the component of their first vertex, light from above."""
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = 0.45 + 0.55 * np.abs(normals @ np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8]))
    face_component = np.minimum(component[faces[:, 0]], len(COLOURS) - 1)
    for index in np.unique(face_component):
        keep = face_component == index
        base = np.array(plt.matplotlib.colors.to_rgb(COLOURS[index]))
        colours = np.clip(base[None] * shade[keep, None], 0, 1)
        axis.add_collection3d(Poly3DCollection(triangles[keep], facecolors=np.c_[colours, np.full(keep.sum(), ALPHAS[index])],
                                               edgecolor="none"))
    low, high = limits
    axis.set_xlim(low[0], high[0])
    axis.set_ylim(low[1], high[1])
    axis.set_zlim(low[2], high[2])
    axis.set_box_aspect(high - low)
    axis.view_init(elev=15, azim=-60)
    axis.set_axis_off()


def mesh_grid(panels: list[list[tuple[str, np.ndarray]]], faces: np.ndarray, component: np.ndarray, title: str):
    """A grid of renderings: ``panels[row][column] = (label, vertices)``, one shared bounding box."""
    stacked = np.concatenate([v for row in panels for _, v in row])
    limits = (stacked.min(axis=0), stacked.max(axis=0))
    rows, columns = len(panels), max(len(row) for row in panels)
    figure = plt.figure(figsize=(2.6 * columns, 2.6 * rows))
    for r, row in enumerate(panels):
        for c, (label, vertices) in enumerate(row):
            axis = figure.add_subplot(rows, columns, r * columns + c + 1, projection="3d")
            draw_mesh(axis, vertices, faces, component, limits)
            axis.set_title(label, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
