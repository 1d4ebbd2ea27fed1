"""``provision run``: batches of prompts on a node or spread over a fleet.

``sweep`` turns a workflow and the command's sweeps into jobs (pure); ``checks`` validates
them against each node's ``/object_info``; ``manifest`` keeps what is done on the laptop;
``pool`` hands jobs to nodes; ``lane`` follows one node's ComfyUI; ``run`` ties them up.
"""
