# Sourced by bench/run.sh and bench/chaos.sh (both define die). Free loopback ports, remembered so one run
# never hands out the same port twice.
used_ports=" "
free_port() { # VAR := a loopback port nobody listens on, below the ephemeral range
  local p _
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    [[ $used_ports == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
  done
  die "no free loopback port found"
}
