#!/bin/busybox sh
# /init of the tiny guest's initramfs: load the virtio disk driver, mount
# the VM's own disk (its qcow2 overlay on the base image) and switch to it,
# so that everything the guest writes lands in its overlay.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
while read -r m; do
    insmod "/lib/modules/$m" || echo "vlx-guest: cannot load $m"
done < /lib/modules/order
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
mkdir -p /newroot
if ! mount -t ext4 /dev/vda /newroot; then
    echo "vlx-guest: cannot mount /dev/vda"
    exec sh
fi
umount /proc
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
