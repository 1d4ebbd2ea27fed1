"""The 1024x1024 Flux benchmark on a node: the run over ComfyUI's API and websocket, memory
sampled meanwhile, the report and its statistics, CSV history, plot and the seed comparison.
"""
