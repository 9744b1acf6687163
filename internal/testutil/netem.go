// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoNetem means the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM
// off, as on the project's own machines).
var ErrNoNetem = errors.New("the kernel has no netem qdisc")

// Netem delays every packet leaving dev in the namespace by delay.
func (n *NetNS) Netem(dev string, delay time.Duration) error {
	return n.Do(func() error {
		link, err := netlink.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("finding %s: %w", dev, err)
		}
		q := netlink.NewNetem(netlink.QdiscAttrs{
			LinkIndex: link.Attrs().Index,
			Handle:    netlink.MakeHandle(1, 0),
			Parent:    netlink.HANDLE_ROOT,
		}, netlink.NetemQdiscAttrs{Latency: uint32(delay.Microseconds())})
		if err := netlink.QdiscAdd(q); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("%w: %v", ErrNoNetem, err)
			}
			return fmt.Errorf("adding netem to %s: %w", dev, err)
		}
		return nil
	})
}
