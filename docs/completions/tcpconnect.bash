# bash completion for tcpconnect. Generated from its flag declarations
# by `go generate ./cmd/tcpconnect`; do not edit.

_tcpconnect()
{
	local cur prev words cword split
	_init_completion -s || return

	case $prev in
	-p | --pid)
		_pids
		return
		;;
	-P | --port | --min-latency | --metrics-addr | --metrics-ports | --web.config.file | --exe | --comm | --dns-cache-size | --buffer-size | --max-pending)
		: # a value, nothing to offer
		return
		;;
	-u | --uid)
		_uids
		return
		;;
	--output)
		COMPREPLY=($(compgen -W 'table json none' -- "$cur"))
		return
		;;
	--cgroup)
		_filedir -d
		return
		;;
	--netns | --cgroupmap | --mntnsmap)
		_filedir
		return
		;;
	--backend)
		COMPREPLY=($(compgen -W 'auto fentry kprobe sockops' -- "$cur"))
		return
		;;
	esac

	$split && return

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W '-t --timestamp -p --pid -P --port -4 --ipv4 -6 --ipv6 -U --print-uid -u --uid -c --count -L --lport -r --result -w --why --failed --min-latency --json --output -q --quiet --metrics-addr --metrics-ports --web.config.file --container --container= -x --extended -W --wide --exe --comm -d --dns --dns-cache-size --cgroup --netns --cgroupmap --mntnsmap --backend --sync-errors --buffer-size --max-pending -v --verbose --version -h --help' -- "$cur"))
		[[ ${COMPREPLY-} == *= ]] && compopt -o nospace
	fi
} &&
	complete -F _tcpconnect tcpconnect
