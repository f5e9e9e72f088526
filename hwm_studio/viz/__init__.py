"""Pure builders of plot data from trajectories and models: numpy in, numpy out, no server state.

Nothing here imports panel, bokeh, holoviews or pyvista, so the same data feeds the served
studio, notebooks and tests.
"""
