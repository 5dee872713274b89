#!/bin/busybox sh
# /init of the rig's test blades: a stand-in for the node agent and the
# tiny image, speaking the same console contract (see docs/contracts.md).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The archive has no device nodes: the kernel found no /dev/console to give
# this script, so it takes devtmpfs's.
exec </dev/console >/dev/console 2>&1

arg() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) echo "${w#*=}"; return;; esac
    done
}
name=$(arg rig.name)
[ -n "$name" ] || name=testblade
hostname "$name"

while read -r m; do
    insmod "/lib/modules/$m" || echo "rig-test: cannot load $m"
done < /lib/modules/order

ip link set lo up
ip link set eth0 up
ip=$(arg rig.ip)
[ -n "$ip" ] && ip addr add "$ip" dev eth0

if [ "$(arg rig.serve)" = 1 ]; then
    mkdir -p /srv/http /var/lib/misc
    # What a blade booting from the network fetches (in this initramfs).
    cp /boot/* /srv/http/
    cat > /etc/udhcpd.conf <<EOF
start 10.99.0.100
end 10.99.0.150
interface eth0
lease_file /var/lib/misc/udhcpd.leases
option subnet 255.255.255.0
boot_file http://${ip%/*}/boot.ipxe
EOF
    touch /var/lib/misc/udhcpd.leases
    udhcpd /etc/udhcpd.conf
    httpd -h /srv/http
    echo "rig-test: serving DHCP and HTTP on ${ip%/*}"
fi

setsid sh -c 'exec sh -i </dev/ttyS1 >/dev/ttyS1 2>&1' &
if [ "$(arg rig.silent)" != 1 ]; then
    echo "vlx-node: ready $name"
    echo "vlx: services ready $name"
fi
exec sh
