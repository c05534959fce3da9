// SPDX-License-Identifier: GPL-2.0
/*
 * The part of tirdad the Rust `kernel` crate cannot reach in 6.12: kretprobe registration
 * and two read-only module parameters. No struct is mirrored in Rust; the handlers only move
 * the probed function's return value through the architecture-neutral
 * regs_return_value()/regs_set_return_value() and leave the new value to Rust (isn.rs).
 */
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/cpumask.h>
#include <linux/minmax.h>
#include <linux/ptrace.h>
#include <linux/sysfs.h>

u64 tirdad_new_seq_and_ts_off(u64 old);
u32 tirdad_new_seq(void);
u64 tirdad_replaced(void);
int tirdad_shim_register(void);
void tirdad_shim_unregister(void);

/* 6.12.y: union tcp_seq_and_ts_off returned in one register. */
static int combined_handler(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	regs_set_return_value(regs, tirdad_new_seq_and_ts_off(regs_return_value(regs)));
	return 0;
}

/* Older kernels: secure_tcp{,v6}_seq() returns the u32 ISN. */
static int seq_handler(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	regs_set_return_value(regs, tirdad_new_seq());
	return 0;
}

struct hook {
	const char *combined, *seq_only, *family;
	struct kretprobe krp;
	bool active;
};

static struct hook hooks[] = {
	{ "secure_tcp_seq_and_ts_off", "secure_tcp_seq", "IPv4" },
	{ "secure_tcpv6_seq_and_ts_off", "secure_tcpv6_seq", "IPv6" },
};

/*
 * Return probes in flight at once: one per task inside the ISN generator. It does not sleep,
 * so that is about one per CPU (a few more with preemption); an exhausted pool is not an
 * error but a connection whose ISN is NOT replaced, counted in `missed`. The kernel's default
 * (2 per CPU, 10 at least) is quadrupled.
 */
static int maxactive(void)
{
	return max_t(int, 64, 8 * num_possible_cpus());
}

/* Probe the current symbol, else the older one. */
static int hook_one(struct hook *h)
{
	int r;

	memset(&h->krp, 0, sizeof(h->krp));
	h->krp.kp.symbol_name = h->combined;
	h->krp.handler = combined_handler;
	h->krp.maxactive = maxactive();
	r = register_kretprobe(&h->krp);
	if (r == -ENOENT) {
		memset(&h->krp, 0, sizeof(h->krp));
		h->krp.kp.symbol_name = h->seq_only;
		h->krp.handler = seq_handler;
		h->krp.maxactive = maxactive();
		r = register_kretprobe(&h->krp);
	}
	if (!r) {
		h->active = true;
		pr_info("tirdad: %s ISNs: hooked %s\n", h->family, h->krp.kp.symbol_name);
	}
	return r;
}

int tirdad_shim_register(void)
{
	int r = hook_one(&hooks[0]);

	if (r) {
		pr_err("tirdad: cannot hook %s or %s (error %d): this kernel is not supported, not loading\n",
		       hooks[0].combined, hooks[0].seq_only, r);
		return r;
	}
	r = hook_one(&hooks[1]);
	if (r == -ENOENT) {
		pr_info("tirdad: no IPv6 ISN generator in this kernel (IPv6 disabled?); IPv4 only\n");
		return 0;
	}
	if (r) {
		pr_err("tirdad: cannot hook the IPv6 ISN generator (error %d), not loading\n", r);
		tirdad_shim_unregister();
	}
	return r;
}

void tirdad_shim_unregister(void)
{
	int i;

	for (i = ARRAY_SIZE(hooks) - 1; i >= 0; i--) {
		if (hooks[i].active) {
			unregister_kretprobe(&hooks[i].krp);
			hooks[i].active = false;
		}
	}
}

static int replaced_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%llu\n", tirdad_replaced());
}

/*
 * The counters are read-only (0444: sysfs never writes them), but an option still reaches .set
 * at load time: `insmod tirdad.ko missed=0`, an `options tirdad ...` line in modprobe.d,
 * `tirdad.replaced=` on the kernel command line. The kernel calls .set without checking it for
 * NULL (an oops while loading), so each counter has one. It ignores the value with a warning
 * instead of refusing the load: an admin's stray option must not leave the ISNs unprotected.
 */
static int counter_set(const char *val, const struct kernel_param *kp)
{
	pr_warn("tirdad: %s is a read-only counter; the option is ignored\n", kp->name);
	return 0;
}

/* NOARG: a bare `tirdad.replaced` (no value) would otherwise fail the load with -EINVAL. */
static const struct kernel_param_ops replaced_ops = {
	.flags = KERNEL_PARAM_OPS_FL_NOARG,
	.set = counter_set,
	.get = replaced_get,
};
module_param_cb(replaced, &replaced_ops, NULL, 0444);
MODULE_PARM_DESC(replaced, "TCP initial sequence numbers replaced since the module was loaded");

/* ISNs the probes let through unreplaced (no free return-probe instance, or a probe that
 * could not run): anything but 0 means some connections carried the kernel's own ISN. */
static int missed_get(char *buf, const struct kernel_param *kp)
{
	unsigned long long n = 0;
	int i;

	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		if (hooks[i].active)
			n += (unsigned int)hooks[i].krp.nmissed + hooks[i].krp.kp.nmissed;
	return sysfs_emit(buf, "%llu\n", n);
}

static const struct kernel_param_ops missed_ops = {
	.flags = KERNEL_PARAM_OPS_FL_NOARG,
	.set = counter_set,
	.get = missed_get,
};
module_param_cb(missed, &missed_ops, NULL, 0444);
MODULE_PARM_DESC(missed, "TCP initial sequence numbers the probes missed (left as the kernel made them)");
