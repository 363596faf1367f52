/* Links against the shared library the way a third party would. */
#include <stdio.h>
#include <string.h>

#include "hsmctl.h"

int
main(void)
{
	hsm_status st;

	if (strcmp(hsm_version(), HSMCTL_VERSION) != 0) {
		fprintf(stderr, "version mismatch\n");
		return 1;
	}
	if (hsm_code_exit("host_key_changed") != HSM_EXIT_HOSTKEY ||
	    hsm_fail(&st, "usage", "x") != -1 || strcmp(st.code, "usage") != 0) {
		fprintf(stderr, "libhsmctl.so misbehaves\n");
		return 1;
	}
	return 0;
}
