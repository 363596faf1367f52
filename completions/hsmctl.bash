# bash completion for hsmctl(1).  Thin on purpose: the candidates come
# from the command table, via "hsmctl __complete -- WORDS...".
_hsmctl()
{
	local cur words cword
	if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
		# Keep "a=b" and "host:port" as one word.
		_get_comp_words_by_ref -n =: cur words cword
	else
		cur=${COMP_WORDS[COMP_CWORD]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	fi
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$("${words[0]}" __complete -- \
		"${words[@]:1:cword}" 2>/dev/null)" -- "$cur"))
	# bash splits words at '=' too: it replaces only what follows the
	# last one, so the candidates must not repeat what precedes it.
	if [[ $cur == *=* && $COMP_WORDBREAKS == *=* ]]; then
		local pre=${cur%"${cur##*=}"}
		COMPREPLY=("${COMPREPLY[@]#"$pre"}")
	fi
	if declare -F __ltrim_colon_completions >/dev/null 2>&1; then
		__ltrim_colon_completions "$cur"
	fi
}
# No candidates (files, free text): bash's default completion.
complete -o default -F _hsmctl hsmctl
