#!/bin/sh
# The seed recipe's commands, in order, as one shell session on the node: what people do by
# hand today, and what bench/line_rate.py compares `provision up` with. Not used by the tool.
#
# Run on the node as: sh -s < seed_recipe.sh, with these in the environment:
#   WORK        an empty folder to install into
#   PYTHON      a Python 3.10-3.12
#   PIP_ARGS    index options for pip (e.g. --no-index --find-links DIR)
#   COMFY_REPO COMFY_REF GGUF_REPO GGUF_REF   where ComfyUI and ComfyUI-GGUF come from
#   MODELS      lines "URL FOLDER/NAME": one plain download per model file, one after another
#   PORT        the port ComfyUI listens on (127.0.0.1)
# The seed pins nothing but torch on its pip line; we add the constraints file it lacks only
# because without it the stand-in requirements upgrade torch and the comparison is moot.
set -eu
cd "$WORK"
"$PYTHON" -m venv venv
. venv/bin/activate
pip install -q $PIP_ARGS --upgrade pip
pip install -q $PIP_ARGS torch==2.3.1 torchvision==0.18.1 torchaudio==2.3.1
printf 'torch==2.3.1\ntorchvision==0.18.1\ntorchaudio==2.3.1\n' > constraints.txt
git clone -q "$COMFY_REPO" ComfyUI
git -C ComfyUI checkout -q "$COMFY_REF"
pip install -q $PIP_ARGS -c constraints.txt -r ComfyUI/requirements.txt
git clone -q "$GGUF_REPO" ComfyUI/custom_nodes/ComfyUI-GGUF
git -C ComfyUI/custom_nodes/ComfyUI-GGUF checkout -q "$GGUF_REF"
pip install -q $PIP_ARGS -c constraints.txt -r ComfyUI/custom_nodes/ComfyUI-GGUF/requirements.txt
echo "$MODELS" | while read -r url target; do
  [ -n "$url" ] || continue
  mkdir -p "ComfyUI/models/$(dirname "$target")"
  curl -fsSL -o "ComfyUI/models/$target" "$url"
done
cd ComfyUI
PYTORCH_ENABLE_MPS_FALLBACK=1 nohup python main.py --listen 127.0.0.1 --port "$PORT" --fp32-vae \
  > "$WORK/comfyui.log" 2>&1 &
echo $! > "$WORK/comfyui.pid"
tries=0
until curl -fs "http://127.0.0.1:$PORT/system_stats" >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 600 ] || { echo "ComfyUI did not answer" >&2; exit 1; }
  sleep 0.1
done
