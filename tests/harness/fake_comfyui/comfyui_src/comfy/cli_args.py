"""STAND-IN of ComfyUI v0.3.64's comfy/cli_args.py: the same flag names, no behaviour beyond them.

Flags that the stand-in acts on: --listen, --port, --cpu, --output-directory,
--input-directory, --temp-directory, --extra-model-paths-config, --quick-test-for-ci,
--log-stdout, --verbose, --disable-all-custom-nodes. The others are accepted and ignored.
"""

import argparse

parser = argparse.ArgumentParser()

parser.add_argument("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?", const="0.0.0.0,::",
                    help="Specify the IP address to listen on (default: 127.0.0.1). A comma separated list is "
                         "accepted. Without an argument: 0.0.0.0,:: (all IPv4 and IPv6 interfaces).")
parser.add_argument("--port", type=int, default=8188, help="Set the listen port.")
parser.add_argument("--tls-keyfile", type=str)
parser.add_argument("--tls-certfile", type=str)
parser.add_argument("--enable-cors-header", type=str, default=None, metavar="ORIGIN", nargs="?", const="*")
parser.add_argument("--max-upload-size", type=float, default=100)

parser.add_argument("--base-directory", type=str, default=None)
parser.add_argument("--extra-model-paths-config", type=str, default=None, metavar="PATH", nargs="+",
                    action="append", help="Load one or more extra_model_paths.yaml files.")
parser.add_argument("--output-directory", type=str, default=None, help="Set the ComfyUI output directory.")
parser.add_argument("--temp-directory", type=str, default=None)
parser.add_argument("--input-directory", type=str, default=None)
parser.add_argument("--auto-launch", action="store_true")
parser.add_argument("--disable-auto-launch", action="store_true", help="Disable auto launching the browser.")
parser.add_argument("--cuda-device", type=int, default=None, metavar="DEVICE_ID")
cm_group = parser.add_mutually_exclusive_group()
cm_group.add_argument("--cuda-malloc", action="store_true")
cm_group.add_argument("--disable-cuda-malloc", action="store_true")

fp_group = parser.add_mutually_exclusive_group()
fp_group.add_argument("--force-fp32", action="store_true")
fp_group.add_argument("--force-fp16", action="store_true", help="Force fp16.")

fpunet_group = parser.add_mutually_exclusive_group()
fpunet_group.add_argument("--fp32-unet", action="store_true")
fpunet_group.add_argument("--fp64-unet", action="store_true")
fpunet_group.add_argument("--bf16-unet", action="store_true")
fpunet_group.add_argument("--fp16-unet", action="store_true")
fpunet_group.add_argument("--fp8_e4m3fn-unet", action="store_true")
fpunet_group.add_argument("--fp8_e5m2-unet", action="store_true")
fpunet_group.add_argument("--fp8_e8m0fnu-unet", action="store_true")

fpvae_group = parser.add_mutually_exclusive_group()
fpvae_group.add_argument("--fp16-vae", action="store_true")
fpvae_group.add_argument("--fp32-vae", action="store_true", help="Run the VAE in full precision fp32.")
fpvae_group.add_argument("--bf16-vae", action="store_true")

parser.add_argument("--cpu-vae", action="store_true", help="Run the VAE on the CPU.")

fpte_group = parser.add_mutually_exclusive_group()
fpte_group.add_argument("--fp8_e4m3fn-text-enc", action="store_true")
fpte_group.add_argument("--fp8_e5m2-text-enc", action="store_true")
fpte_group.add_argument("--fp16-text-enc", action="store_true")
fpte_group.add_argument("--fp32-text-enc", action="store_true")
fpte_group.add_argument("--bf16-text-enc", action="store_true")

parser.add_argument("--force-channels-last", action="store_true")
parser.add_argument("--directml", type=int, nargs="?", metavar="DIRECTML_DEVICE", const=-1)
parser.add_argument("--supports-fp8-compute", action="store_true")

parser.add_argument("--preview-method", type=str, default="none", choices=["none", "auto", "latent2rgb", "taesd"],
                    metavar="[none,auto,latent2rgb,taesd]", help="Default preview method for sampler nodes.")
parser.add_argument("--preview-size", type=int, default=512)

cache_group = parser.add_mutually_exclusive_group()
cache_group.add_argument("--cache-classic", action="store_true")
cache_group.add_argument("--cache-lru", type=int, default=0)
cache_group.add_argument("--cache-none", action="store_true",
                         help="Execute every node for each run (the stand-in honours this).")

attn_group = parser.add_mutually_exclusive_group()
attn_group.add_argument("--use-split-cross-attention", action="store_true")
attn_group.add_argument("--use-quad-cross-attention", action="store_true")
attn_group.add_argument("--use-pytorch-cross-attention", action="store_true")
attn_group.add_argument("--use-sage-attention", action="store_true")
attn_group.add_argument("--use-flash-attention", action="store_true")
parser.add_argument("--disable-xformers", action="store_true")

upcast = parser.add_mutually_exclusive_group()
upcast.add_argument("--force-upcast-attention", action="store_true")
upcast.add_argument("--dont-upcast-attention", action="store_true")

vram_group = parser.add_mutually_exclusive_group()
vram_group.add_argument("--gpu-only", action="store_true")
vram_group.add_argument("--highvram", action="store_true")
vram_group.add_argument("--normalvram", action="store_true")
vram_group.add_argument("--lowvram", action="store_true")
vram_group.add_argument("--novram", action="store_true")
vram_group.add_argument("--cpu", action="store_true", help="To use the CPU for everything (slow).")

parser.add_argument("--reserve-vram", type=float, default=None)
parser.add_argument("--async-offload", action="store_true")
parser.add_argument("--default-hashing-function", type=str, choices=["md5", "sha1", "sha256", "sha512"],
                    default="sha256")
parser.add_argument("--disable-smart-memory", action="store_true")
parser.add_argument("--deterministic", action="store_true")
parser.add_argument("--fast", nargs="*", type=str)
parser.add_argument("--mmap-torch-files", action="store_true")
parser.add_argument("--disable-mmap", action="store_true")
parser.add_argument("--dont-print-server", action="store_true")
parser.add_argument("--quick-test-for-ci", action="store_true", help="Quick test for CI.")
parser.add_argument("--windows-standalone-build", action="store_true")
parser.add_argument("--disable-metadata", action="store_true")
parser.add_argument("--disable-all-custom-nodes", action="store_true")
parser.add_argument("--whitelist-custom-nodes", type=str, nargs="+", default=[])
parser.add_argument("--disable-api-nodes", action="store_true")
parser.add_argument("--multi-user", action="store_true")
parser.add_argument("--verbose", default="INFO", const="DEBUG", nargs="?",
                    choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
parser.add_argument("--log-stdout", action="store_true",
                    help="Send normal process output to stdout instead of stderr (default).")
parser.add_argument("--front-end-version", type=str, default="comfyanonymous/ComfyUI@latest")
parser.add_argument("--front-end-root", type=str, default=None)
parser.add_argument("--user-directory", type=str, default=None)
parser.add_argument("--enable-compress-response-body", action="store_true")
parser.add_argument("--comfy-api-base", type=str, default="https://api.comfy.org")
parser.add_argument("--database-url", type=str, default=None)

args = parser.parse_args()

if args.disable_auto_launch:
    args.auto_launch = False
