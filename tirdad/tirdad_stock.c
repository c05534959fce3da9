// SPDX-License-Identifier: GPL-2.0
/*
 * tirdad for kernels without CONFIG_RUST (Debian's stock kernels): the module's entry points.
 * The logic is Rust (isn.rs, compiled into tirdad_isn.o with the kernel's code generation
 * flags); the kretprobes are in tirdad_shim.c, the same file the Rust-for-Linux build uses.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/random.h>

u64 tirdad_replaced(void);
int tirdad_shim_register(void);
void tirdad_shim_unregister(void);

static int __init tirdad_init(void)
{
	/* Random ISNs from an unseeded RNG would be worse than the stock ones. */
	int r = wait_for_random_bytes();

	if (r)
		return r;
	r = tirdad_shim_register();
	if (r)
		return r;
	pr_info("tirdad: random TCP ISNs enabled\n");
	return 0;
}

static void __exit tirdad_exit(void)
{
	/* Unregistering waits for running handlers. */
	tirdad_shim_unregister();
	pr_info("tirdad: random TCP ISNs disabled after replacing %llu ISNs\n", tirdad_replaced());
}

module_init(tirdad_init);
module_exit(tirdad_exit);
MODULE_AUTHOR("anon-daemons");
MODULE_DESCRIPTION("Random TCP initial sequence numbers");
MODULE_LICENSE("GPL");
