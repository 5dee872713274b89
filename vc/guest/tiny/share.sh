#!/bin/sh
# /etc/vlx-share of the tiny guest: mounts its VC's share (the kernel
# argument vlx.share=ADDR:PATH, given as $1) at /vc over NFSv4.2, once the
# VM has its address, after loading the NFS client. Busybox has no NFS
# mount code of its own, but for type nfs4 it hands the option string to
# mount(2) and the kernel parses it (addr= spares a name lookup). Tries
# again while the storage holder is not yet exporting the VC's folder;
# says on the console how it went.
share="$1"
addr="${share%%:*}"
# The NFS client, kept out of the initramfs (a VM without a share does
# not load it).
while read -r m; do
    insmod "/lib/modules/nfs/$m" || echo "vlx-guest: cannot load $m"
done < /lib/modules/nfs/order
mkdir -p /vc
i=0
while [ "$i" -lt 60 ]; do
    if err=$(mount -t nfs4 "$share" /vc -o "vers=4.2,addr=$addr" 2>&1); then
        echo "vlx-guest: shared mounted $share on /vc"
        exit 0
    fi
    i=$((i + 1))
    sleep 2
done
echo "vlx-guest: shared not mounted $share: $err"
exit 1
