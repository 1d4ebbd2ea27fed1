"""The one remote script that reads every fact of a node in a single round trip."""

from __future__ import annotations

import shlex

# POSIX sh: it runs as `/bin/sh -s` on macOS (bash 3.2 as sh) and Debian (dash). Each section
# is a marker line, then whatever its probe printed; a missing command prints nothing and the
# parser decides whether that section may be empty. Probes send stderr to /dev/null so that
# stdout holds only sections.
_BODY = r"""
# The body is one function run with stdin from /dev/null: the shell reads this script from
# stdin (sh -s), so any probe that read stdin would otherwise swallow the rest of the script.
provision_facts() {
# Non-interactive SSH on macOS lacks Homebrew's bin (and Debian's lacks sbin): append, never
# prepend, so the login's own PATH keeps precedence.
PATH="${PATH:-/usr/bin:/bin}:/opt/homebrew/bin:/usr/local/bin:/usr/sbin:/sbin"
export PATH
LC_ALL=C
export LC_ALL
nl='
'

section() { printf '@@provision:%s@@\n' "$1"; }

# Follow symlinks without realpath/readlink -f (absent on older macOS).
resolve() {
  _path=$1
  _hops=0
  while [ -h "$_path" ] && [ "$_hops" -lt 40 ]; do
    _link=$(readlink "$_path") || break
    case $_link in
      /*) _path=$_link ;;
      *) _path=${_path%/*}/$_link ;;
    esac
    _hops=$((_hops + 1))
  done
  _dir=$(cd -P "${_path%/*}/" 2>/dev/null && pwd -P) || _dir=${_path%/*}
  printf '%s/%s\n' "${_dir%/}" "${_path##*/}"
}

# Without the Command Line Tools, macOS's /usr/bin/python3 and /usr/bin/git are stubs that
# ask to install them (by any name that leads there: /bin/python3 on a merged /usr). $1 is a
# resolved path; never run one this says is a stub.
clt_stub() {
  [ "$kernel" = Darwin ] && [ -z "$clt" ] || return 1
  case $1 in /usr/bin/python3|/usr/bin/git) return 0 ;; esac
  return 1
}

kernel=$(uname -s 2>/dev/null)
section kernel
printf '%s\n' "$kernel"
section arch
uname -m 2>/dev/null

clt=
if [ "$kernel" = Darwin ]; then
  section sw_vers
  sw_vers -productName 2>/dev/null
  sw_vers -productVersion 2>/dev/null
  section memsize
  sysctl -n hw.memsize 2>/dev/null
  section cpu_brand
  sysctl -n machdep.cpu.brand_string 2>/dev/null
  section ncpu
  sysctl -n hw.ncpu 2>/dev/null
  section wired_limit
  sysctl -n iogpu.wired_limit_mb 2>/dev/null
  section xcode_clt
  clt=$(xcode-select -p 2>/dev/null) && printf '%s\n' "$clt"
  section boottime
  sysctl -n kern.boottime 2>/dev/null
  section filevault
  fdesetup status 2>/dev/null
  section pmset
  pmset -g 2>/dev/null
else
  section os_release
  cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
  section meminfo
  cat /proc/meminfo 2>/dev/null
  section cpuinfo
  grep -m 1 '^model name' /proc/cpuinfo 2>/dev/null
  section nproc
  nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null
  section nvidia_smi
  # A present but broken nvidia-smi (driver mismatch) prints its complaint on stdout: keep it
  # out, a node whose GPUs cannot be queried has none we can use.
  gpus=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null) \
    && printf '%s\n' "$gpus"
  section boottime
  grep '^btime ' /proc/stat 2>/dev/null
fi

workdir=@WORKDIR@
case $workdir in
  "~") workdir=$HOME ;;
  "~/"*) workdir=$HOME/${workdir#??} ;;
esac
case $workdir in
  /*) ;;
  *) workdir=$PWD/$workdir ;;
esac
# The workdir usually does not exist yet: measure its nearest existing ancestor.
probe=$workdir
while :; do
  # Drop trailing slashes ("/a//" -> "/a") so the path reads as written; keep "/" itself.
  while :; do case $probe in ?*/) probe=${probe%/} ;; *) break ;; esac; done
  if [ -d "$probe" ] || [ "$probe" = / ]; then break; fi
  probe=${probe%/*}
  [ -n "$probe" ] || probe=/
done
section disk_path
printf '%s\n' "$probe"
section df
df -Pk "$probe" 2>/dev/null

section pythons
# Every PATH directory, not just the first hit: a pyenv shim or macOS's /usr/bin/python3
# (3.9) often shadows a usable interpreter further along. PATH already ends with Homebrew's.
# On a Mac also where interpreters live off PATH: Homebrew's versioned formulae, MacPorts,
# python.org's framework, pyenv, uv (its bin folder, its managed builds, and the work
# folder's tools/bin, where `up` asks uv to put one).
dirs=$PATH
if [ "$kernel" = Darwin ]; then
  for dir in /opt/homebrew/opt/python@3.1[0-9]/bin /usr/local/opt/python@3.1[0-9]/bin \
      /opt/local/bin /Library/Frameworks/Python.framework/Versions/3.1[0-9]/bin \
      "$HOME"/.pyenv/versions/3.1[0-9]*/bin "$HOME"/.local/bin \
      "$HOME"/.local/share/uv/python/cpython-3.1[0-9]*/bin "$workdir"/tools/bin; do
    case $dir in *:*) continue ;; esac
    [ -d "$dir" ] && dirs=$dirs:$dir
  done
fi
seen=
for name in python3.14 python3.13 python3.12 python3.11 python3.10 python3; do
  saved_ifs=$IFS
  IFS=:
  set -f
  for dir in $dirs; do
    IFS=$saved_ifs
    set +f
    case $dir in /*) ;; *) continue ;; esac
    candidate=${dir%/}/$name
    [ -f "$candidate" ] && [ -x "$candidate" ] || continue
    real=$(resolve "$candidate")
    clt_stub "$real" && continue
    case "$nl$seen" in *"$nl$real$nl"*) continue ;; esac
    seen=$seen$real$nl
    output=$("$candidate" --version 2>&1 </dev/null)
    status=$?
    output=$(printf '%s' "$output" | tr '\t\n' '  ')
    printf '%s\t%s\t%s\t%s\n' "$candidate" "$real" "$status" "$output"
  done
  IFS=$saved_ifs
  set +f
done

section brew
brew=$(command -v brew 2>/dev/null)
case $brew in /*) ;; *) brew= ;; esac
for fallback in /opt/homebrew/bin/brew /usr/local/bin/brew; do
  if [ -z "$brew" ] && [ -x "$fallback" ]; then brew=$fallback; fi
done
if [ -n "$brew" ]; then printf '%s\n' "$brew"; fi

section macports
port=$(command -v port 2>/dev/null)
case $port in /*) ;; *) port= ;; esac
if [ -z "$port" ] && [ -x /opt/local/bin/port ]; then port=/opt/local/bin/port; fi
if [ -n "$port" ]; then printf '%s\n' "$port"; fi

section git
# The first git that works, on PATH or where Homebrew and MacPorts put it.
saved_ifs=$IFS
IFS=:
set -f
for dir in $PATH /opt/homebrew/bin /usr/local/bin /opt/local/bin; do
  IFS=$saved_ifs
  set +f
  case $dir in /*) ;; *) continue ;; esac
  candidate=${dir%/}/git
  [ -f "$candidate" ] && [ -x "$candidate" ] || continue
  clt_stub "$(resolve "$candidate")" && continue
  version=$("$candidate" --version 2>/dev/null </dev/null) || continue
  printf '%s\t%s\n' "$candidate" "$version"
  break
done
IFS=$saved_ifs
set +f

section identity
uid=$(id -u 2>/dev/null)
user=$(id -un 2>/dev/null) || user=${USER:-${LOGNAME:-}}
printf '%s\n%s\n%s\n' "$uid" "$user" "$HOME"

# The parser requires this marker, so output cut short is an error, not missing facts.
section end
}
provision_facts </dev/null
"""


def facts_script(workdir: str) -> str:
    """Return the POSIX sh script that prints every fact section; ``workdir`` picks the disk."""
    # shlex.quote makes the workdir one literal word: nothing in it is ever expanded or run;
    # only a leading "~" is expanded, by the script itself, to $HOME.
    return _BODY.replace("@WORKDIR@", shlex.quote(workdir)).lstrip("\n")
