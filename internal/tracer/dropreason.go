// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// dropReasons names the kernel's drop reasons. The kernel numbers enum
// skb_drop_reason afresh in every release (reasons are inserted in the
// middle), so the names come from the running kernel's BTF, not from the
// headers the BPF code was built with.
type dropReasons struct {
	names map[uint32]string
}

const dropReasonPrefix = "SKB_DROP_REASON_"

// loadDropReasons reads enum skb_drop_reason from the kernel's BTF.
func loadDropReasons() (*dropReasons, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, err
	}
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, err
	}
	return dropReasonsOf(enum), nil
}

func dropReasonsOf(enum *btf.Enum) *dropReasons {
	r := &dropReasons{names: make(map[uint32]string, len(enum.Values))}
	for _, v := range enum.Values {
		name, ok := strings.CutPrefix(v.Name, dropReasonPrefix)
		if !ok || name == "MAX" {
			continue
		}
		r.names[uint32(v.Value)] = name
	}
	return r
}

// name returns the reason's name without its SKB_DROP_REASON_ prefix, or
// its number when the kernel's BTF did not name it. Names are shared, so
// decoding an event does not allocate.
func (r *dropReasons) name(v uint32) string {
	if r != nil {
		if n, ok := r.names[v]; ok {
			return n
		}
	}
	return "reason" + strconv.FormatUint(uint64(v), 10)
}
