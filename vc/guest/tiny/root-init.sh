#!/bin/busybox sh
# /sbin/init of the tiny guest's root (on the VM's disk): say ready with
# the VM's name from `vlx.vm=`, ask for its address by DHCP when it has a
# NIC (the script reports `vlx-guest: address VM ADDR` on the console), then
# keep a shell on the console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
vm=$(sed -n 's/.*vlx\.vm=\([^ ]*\).*/\1/p' /proc/cmdline)
hostname "${vm#*/}"
echo "$vm" >> /var/boots
sync
echo "vlx-guest: ready $vm"
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    # -b: keep asking in the background until the blade's dnsmasq answers.
    udhcpc -i eth0 -s /etc/udhcpc.script -b -t 5 -T 3 >/dev/null 2>&1
fi
while :; do setsid cttyhack sh; done
