#!/bin/busybox sh
# /sbin/init of the tiny guest's root (on the VM's disk): say ready with
# the VM's name from `vlx.vm=`, then keep a shell on the console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
vm=$(sed -n 's/.*vlx\.vm=\([^ ]*\).*/\1/p' /proc/cmdline)
hostname "${vm#*/}"
echo "$vm" >> /var/boots
sync
echo "vlx-guest: ready $vm"
while :; do setsid cttyhack sh; done
