#!/usr/bin/env bash
# Writes a busybox root filesystem tarball, made from Debian's busybox-static, to $1 (or stdout).
# It is the image every demo and test uses: no registry is needed.
set -euo pipefail
out=${1:--}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-image: $bb missing; run scripts/install-deps.sh" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,var}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for a in $("$bb" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$dir/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$dir/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$dir/etc/group"
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@1700000000 -C "$dir" -cf "$out" .
