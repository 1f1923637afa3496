/*
 * lease.pml: the ACTIVE lease of udmg-server (ARCHITECTURE.md, "The lease",
 * points 1-8; issue 11 point 3), checked with spin.  `make model` runs it;
 * README.md next to this file gives the figures and argues each
 * abstraction.  In short:
 *
 * Property.  Never two nodes serving at the same real instant.  A node
 *   serves only while Active and its own clock is before its expiry; that
 *   check and the serving action are one step (the storage fence makes a
 *   late write land in a staging file only), so "may serve" is
 *   ph == ACTIVE && exp > 0, and check() asserts that at most one node may
 *   serve after every step that can make one start.  Listeners opening and
 *   closing only make a node serve less than it may.
 *
 * Clocks.  Real time advances in ticks (proctype clock).  In each tick each
 *   node's clock advances by RLO or RHI units, chosen anew per node and per
 *   tick, whether or not the node takes steps: every clock runs within
 *   [1-e, 1+e] of real time (scaled by (RLO+RHI)/2), e = (RHI-RLO)/(RHI+RLO);
 *   defaults RLO=1, RHI=2, e = 1/3.  Times are kept only as countdowns on
 *   the owning node's clock (exp, wt, claim, ft), so the state space is
 *   finite and runs of any length are covered.
 *   D    lease length on the holder's clock (default 2).
 *   WAIT the successor's wait after the arrival of another holder's entry,
 *        on its own clock: D * (1+e)/(1-e) = D * RHI/RLO (default 4).  The
 *        holder's D can last D/RLO ticks and the successor's WAIT as little
 *        as WAIT/RHI ticks, so the factor must cover the ratio of two
 *        clocks' rates, (1+e)/(1-e), not (1+e) alone: with -DD=3 (WAIT 6)
 *        the search holds, with -DD=3 -DWAIT=4 (D*(1+e)) it finds an
 *        overlap.  (In ticks: ceil(WAIT/RHI) >= ceil(D/RLO).)
 *
 * Faults.  A node may take no step for any number of ticks (pause, disk
 *   stall, SIGSTOP); may restart at any step (kill -9, SIGTERM, fence or
 *   die), losing its process state and its arrival times; may notice a lost
 *   leadership late or never (it keeps serving until its own expiry or its
 *   fence).  An entry in flight commits while its proposer leads, or is
 *   committed or lost for good when another node wins an election.
 *
 * Raft, abstracted.  The FSM's lease (epoch, holder, released, clean) and
 *   at most one entry in flight (fk, fn, fe, fc), which only the current
 *   term's leader (leader) may propose: a deposed node's proposals are lost.
 *   A new leader has applied every committed entry (Barrier) before it
 *   acquires.  Every node applies a committed entry at the moment it
 *   commits: applying it later only moves its arrival time later (a longer
 *   wait) and the proposer's expiry is counted from the proposal whenever it
 *   learns the commit, so the earliest apply is the worst case (README.md).
 *
 * Grace (-DG=2; default 0).  A holder's service address may be answered for
 *   G units of its own clock past its lease (vip: the fence's slack, or the
 *   kernel's address lifetime), after a kill or a pause too; only its
 *   fence (Drop) or a restart (vip.New removes a leftover address) ends it
 *   sooner.  eff[i] counts that down; the second property is that at most
 *   one node answers for the address (eff > 0) at any real instant.  The
 *   holder declares G with its acquire, and the successor waits
 *   (D + G) * RHI / RLO: the grace, like the lease, is measured on the
 *   holder's clock.  Mutants: -DGRACE_NONE waits for the lease alone;
 *   -DGRACE_UNSTRETCHED adds G unstretched (D * RHI / RLO + G, the rule
 *   cluster/leasemachine.go had before this model covered grace).
 *
 * Mutant -DOLD_RELEASE: the rule before issue 11: a released lease, or the
 *   node's own lease, means no wait.  spin must find an overlap with it.
 *   -DOLD_RELEASE=2 keeps only the release shortcut (the overlap reproduced
 *   in issue 11), -DOLD_RELEASE=3 only the own-lease one.
 */

#ifndef N
#define N 3
#endif
#ifndef RLO
#define RLO 1
#endif
#ifndef RHI
#define RHI 2
#endif
#ifndef D
#define D 2
#endif
#ifndef G
#define G 0
#endif
#ifndef WAIT
#if defined(GRACE_NONE)
#define WAIT (D * RHI / RLO)
#elif defined(GRACE_UNSTRETCHED)
#define WAIT (D * RHI / RLO + G)
#else
#define WAIT ((D + G) * RHI / RLO)
#endif
#endif
#ifndef MAXE
#define MAXE 3 /* acquisitions (epochs) in one run */
#endif

/* phase of a node's lease state machine (cluster/leasemachine.go) */
#define IDLE      0 /* not holding; acquires when it leads */
#define ACQUIRING 1 /* Acquire proposed, not yet committed */
#define WAITING   2 /* Acquired(waitUntil): committed, waiting out the others */
#define ACTIVE    3 /* may serve while exp > 0 */
#define FENCED    4 /* stopped serving; the fence completed (a failed fence = restart) */

/* kinds of entries */
#define NONE 0
#define ACQ  1
#define REN  2
#define REL  3

/* The replicated lease, as the FSM holds it. */
byte epoch;    /* 0: never held */
byte holder;
bool released;
bool clean;    /* the release came after a completed wait */

/* The one entry in flight. */
byte fk = NONE; /* kind */
byte fn;        /* proposer, the holder it names */
byte fe;        /* epoch */
bool fc;        /* clean, for a release */
byte ft;        /* D minus the proposer's time since proposing */

byte leader;    /* the node the current Raft term belongs to; N: none */

/* Per node. */
byte ph[N];     /* phase */
byte exp[N];    /* expiry - now */
byte wt[N];     /* waitUntil - now */
byte claim[N];  /* max over applied entries of other holders of (arrival + WAIT) - now */
byte myEp[N];   /* epoch this process acquired last (0: none) */
bool done[N];   /* this process completed its wait for myEp */
byte eff[N];    /* until when its service address is answered for - now (0: not) */

hidden int rt;            /* real ticks, for the trail only */
hidden byte shown[N];     /* a node's epoch, for the trail only */
hidden byte k, r, nserve, nanswer; /* scratch, inside d_step only */
hidden byte ok, owe;      /* scratch, inside d_step only */

inline check() {
	nserve = 0;
	for (k : 0 .. N-1) {
		if
		:: ph[k] == ACTIVE && exp[k] > 0 -> nserve++
		:: else
		fi
	}
	if
	:: nserve > 1 ->
		printf("t=%d OVERLAP:", rt);
		for (k : 0 .. N-1) {
			if
			:: ph[k] == ACTIVE && exp[k] > 0 -> printf(" n%d serves epoch %d (%d left);", k, shown[k], exp[k])
			:: else
			fi
		}
		printf("\n")
	:: else
	fi;
	assert(nserve <= 1);
	nanswer = 0;
	for (k : 0 .. N-1) {
		if
		:: eff[k] > 0 -> nanswer++
		:: else
		fi
	}
	if
	:: nanswer > 1 ->
		printf("t=%d TWO ADDRESSES:", rt);
		for (k : 0 .. N-1) {
			if
			:: eff[k] > 0 -> printf(" n%d answers (%d left);", k, eff[k])
			:: else
			fi
		}
		printf("\n")
	:: else
	fi;
	assert(nanswer <= 1)
}

/* The entry in flight commits: the FSM applies it, every other node
 * applies it now (arrival = now), and its proposer learns the outcome. */
inline commit() {
	if
	:: fk == ACQ -> ok = (fe == epoch + 1);
		if
		:: ok -> epoch = fe; holder = fn; released = 0; clean = 0;
			/* the others' epochs are history: their renewals and releases
			 * are refused whatever they name, so forget them */
			for (k : 0 .. N-1) {
				if
				:: k != fn && myEp[k] > 0 -> myEp[k] = 0; done[k] = 0;
					if
					:: ph[k] == FENCED -> ph[k] = IDLE /* nothing left to release */
					:: else
					fi
				:: else
				fi
			}
		:: else
		fi
	:: fk == REN -> ok = (fe == epoch && !released)
	:: fk == REL -> ok = (fe == epoch);
		if
		:: ok -> released = 1; clean = fc
		:: else
		fi
	fi;
	/* arrival of a lease entry of another holder (the holder after the
	 * entry, as leaseMachine.observe has it): it may serve until D after
	 * the proposal, which was before now */
	for (k : 0 .. N-1) {
		if
		:: k != holder && epoch > 0 -> claim[k] = WAIT
		:: else
		fi
	}
	if
	:: fk == ACQ && ok && ph[fn] == ACQUIRING ->
		ph[fn] = WAITING; exp[fn] = ft; myEp[fn] = fe; shown[fn] = fe; done[fn] = 0;
		printf("t=%d n%d holds epoch %d: waits %d, lease %d\n", rt, fn, fe, wt[fn], exp[fn])
	:: fk == ACQ && !ok && ph[fn] == ACQUIRING ->
		ph[fn] = IDLE; wt[fn] = 0
	:: fk == ACQ && ph[fn] != ACQUIRING ->
		printf("t=%d n%d's Acquire(epoch %d) commits, accepted=%d (n%d no longer waits for it)\n", rt, fn, fe, ok, fn)
	:: fk == REN && ok && (ph[fn] == WAITING || ph[fn] == ACTIVE) ->
		if
		:: ft > exp[fn] -> exp[fn] = ft
		:: else
		fi;
		if
		:: ph[fn] == ACTIVE && exp[fn] + G > eff[fn] -> eff[fn] = exp[fn] + G /* Refresh */
		:: else
		fi;
		printf("t=%d n%d renewed epoch %d: lease %d\n", rt, fn, fe, exp[fn]);
		check()
	:: fk == REL ->
		printf("t=%d n%d released epoch %d clean=%d accepted=%d\n", rt, fn, fe, fc, ok)
	:: else /* refused, or the proposer moved on (fenced, restarted) */
	fi;
	fk = NONE; fn = 0; fe = 0; fc = 0; ft = 0
}

inline elect(i) {
	leader = i;
	printf("t=%d n%d wins an election\n", rt, i)
}

inline dec(x, r) {
	if
	:: x > r -> x = x - r
	:: else -> x = 0
	fi
}


/* Symmetry reduction (-DSYMMETRY, for N = 4 and 5).  The nodes are
 * interchangeable: every node process runs the same loop, its program
 * counter is back at the loop's head after each atomic step, and it differs
 * from the others only by its index i.  So a state and the state with the
 * nodes' data permuted (and holder, fn and leader renamed alike) have the
 * same futures up to the renaming, and the property (how many nodes serve)
 * does not depend on names.  canon() sorts the nodes' data into one order
 * after every step, so the search stores one state per class: up to N!
 * fewer.  The trail then renames nodes from step to step, so the mutants,
 * whose trails are read, run without it. */
#ifdef SYMMETRY
hidden int key[N];
hidden byte perm[N], inv[N];
hidden byte tph[N], texp[N], twt[N], tclaim[N], tmy[N], teff[N];
hidden byte tdone[N];
hidden byte a, b, best;
inline canon() {
	for (a : 0 .. N-1) {
		key[a] = (((((((ph[a] * 16 + exp[a]) * 16 + wt[a]) * 16 + claim[a]) * 16 + eff[a]) * 4 + myEp[a]) * 2 + done[a]) * 2 +
		          (epoch > 0 && holder == a)) * 4 + (fk != NONE && fn == a) * 2 + (leader == a);
		perm[a] = a
	}
	/* selection sort of perm by key */
	for (a : 0 .. N-2) {
		best = a;
		for (b : a+1 .. N-1) {
			if
			:: key[perm[b]] < key[perm[best]] -> best = b
			:: else
			fi
		}
		b = perm[a]; perm[a] = perm[best]; perm[best] = b
	}
	for (a : 0 .. N-1) {
		inv[perm[a]] = a;
		tph[a] = ph[perm[a]]; texp[a] = exp[perm[a]]; twt[a] = wt[perm[a]];
		tclaim[a] = claim[perm[a]]; tmy[a] = myEp[perm[a]]; tdone[a] = done[perm[a]]; teff[a] = eff[perm[a]]
	}
	for (a : 0 .. N-1) {
		ph[a] = tph[a]; exp[a] = texp[a]; wt[a] = twt[a];
		claim[a] = tclaim[a]; myEp[a] = tmy[a]; done[a] = tdone[a]; eff[a] = teff[a]
	}
	if
	:: epoch > 0 -> holder = inv[holder]
	:: else -> holder = 0
	fi;
	if
	:: fk != NONE -> fn = inv[fn]
	:: else
	fi;
	if
	:: leader < N -> leader = inv[leader]
	:: else
	fi
}
#else
inline canon() { skip }
#endif

proctype node(byte i) {
	do
	/* Acquire, as leader after its Barrier, with nothing in flight. */
	:: d_step { leader == i && (ph[i] == IDLE || ph[i] == FENCED) && fk == NONE && epoch < MAXE ->
#if defined(OLD_RELEASE) && OLD_RELEASE == 2
		owe = !(epoch == 0 || released || /* only the release shortcut */
		        (holder == i && myEp[i] == epoch && done[i]));
#elif defined(OLD_RELEASE) && OLD_RELEASE == 3
		owe = !(epoch == 0 || (released && clean) || holder == i); /* only the own-lease one */
#elif defined(OLD_RELEASE)
		owe = !(epoch == 0 || released || holder == i);
#else
		owe = !(epoch == 0 || (released && clean) ||
		        (holder == i && myEp[i] == epoch && done[i]));
#endif
		wt[i] = (owe -> claim[i] : 0);
		fk = ACQ; fn = i; fe = epoch + 1; ft = D;
		ph[i] = ACQUIRING;
		printf("t=%d n%d proposes Acquire(epoch %d), waitUntil = now+%d (lease: epoch %d of n%d, released=%d clean=%d)\n",
		       rt, i, fe, wt[i], epoch, holder, released, clean); canon() }
	/* The wait is over: Active. */
	:: d_step { ph[i] == WAITING && wt[i] == 0 && exp[i] > 0 ->
		ph[i] = ACTIVE; done[i] = 1; eff[i] = exp[i] + G; /* Hold */
		printf("t=%d n%d ACTIVE, epoch %d (lease %d left)\n", rt, i, shown[i], exp[i]);
		check(); canon() }
	/* Renew: every h, and pauses make that any moment. */
	:: d_step { leader == i && (ph[i] == WAITING || ph[i] == ACTIVE) && fk == NONE ->
		fk = REN; fn = i; fe = myEp[i]; ft = D; canon() }
	/* Fence (expiry, leadership loss, shutdown): stop serving; it completes. */
	:: d_step { ph[i] == ACQUIRING || ph[i] == WAITING || ph[i] == ACTIVE ->
		ph[i] = (myEp[i] > 0 -> FENCED : IDLE); exp[i] = 0; wt[i] = 0; eff[i] = 0; /* Drop first */
		printf("t=%d n%d fenced\n", rt, i); canon() }
	/* Release (shutdown, handover), only after a completed fence. */
	:: d_step { ph[i] == FENCED && myEp[i] > 0 && leader == i && fk == NONE ->
		fk = REL; fn = i; fe = myEp[i]; fc = done[i];
		ph[i] = IDLE; myEp[i] = 0; done[i] = 0;
		printf("t=%d n%d proposes Release(epoch %d, clean=%d)\n", rt, i, fe, fc); canon() }
	/* Win an election: the old leader's entry in flight commits first ... */
	:: d_step { fk != NONE && fn != i -> commit(); elect(i); canon() }
	/* ... or is lost (or there was none). */
	:: d_step { leader != i || fk != NONE -> fk = NONE; fn = 0; fe = 0; fc = 0; ft = 0; elect(i); canon() }
	/* Restart: the process state is lost; so are its arrival times, which
	 * were all before now, so now + WAIT bounds them (waiting from the
	 * election, as the implementation does, is later still). */
	:: d_step { ph[i] != IDLE || exp[i] + wt[i] + myEp[i] + done[i] + eff[i] > 0 || claim[i] < WAIT ->
		ph[i] = IDLE; exp[i] = 0; wt[i] = 0; myEp[i] = 0; done[i] = 0; claim[i] = WAIT; eff[i] = 0;
		if
		:: leader == i -> leader = N /* no leader until the next election */
		:: else
		fi;
		printf("t=%d n%d restarts\n", rt, i); canon() }
	od
}

/* The leader's entry in flight commits. */
proctype raft() {
	do
	:: d_step { fk != NONE && fn == leader -> commit(); canon() }
	od
}

/* One real tick: every clock advances by RLO or RHI units; bit j of m
 * says which for node j (one branch per choice, up to N = 5). */
inline tick(m) {
	for (k : 0 .. N-1) {
		if
		:: (m >> k) & 1 -> r = RHI
		:: else -> r = RLO
		fi;
		dec(exp[k], r); dec(wt[k], r); dec(claim[k], r); dec(eff[k], r);
		if
		:: fk != NONE && fn == k -> dec(ft, r)
		:: else
		fi
	}
	rt++
}

#define TICK(m) :: d_step { m < (1 << N) -> tick(m); canon() }

proctype clock() {
	do
	TICK(0)  TICK(1)  TICK(2)  TICK(3)  TICK(4)  TICK(5)  TICK(6)  TICK(7)
	TICK(8)  TICK(9)  TICK(10) TICK(11) TICK(12) TICK(13) TICK(14) TICK(15)
	TICK(16) TICK(17) TICK(18) TICK(19) TICK(20) TICK(21) TICK(22) TICK(23)
	TICK(24) TICK(25) TICK(26) TICK(27) TICK(28) TICK(29) TICK(30) TICK(31)
	od
}

init {
	byte i;
	atomic {
		for (i : 0 .. N-1) { run node(i) }
		run raft();
		run clock()
	}
}
