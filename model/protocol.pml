/*
 * blaze-cluster: the failover/failback protocol as the code implements it (issue 9).
 *
 * Read with docs/protocol.md, which maps every part to its module and function.
 * Bounds come from -D flags (defaults below); model/check.sh runs one spin search per
 * property (or all six in one search). Compile-time switches:
 *   -DPROP_x      which safety assertions are checked (any number of them)
 *   -DMUTANT_BBM  the deliberate protocol bug: placement sends the claim together with
 *                 the releases (not after they are confirmed) and the agent claims
 *                 without its per-camera epoch check (docs/protocol.md, "The mutant")
 *   -DNOCANON     no canonical form after each step (see "canonical form" below): the
 *                 same behaviours, many more states; to cross-check the reductions at
 *                 small bounds (it needs a larger NETCAP: dead messages stay in flight)
 *   -DPROJECT     with -DPRINTF: print what the properties read, after every step (the
 *                 cross-check of model/check.sh --cross-check)
 *
 * MESSAGE TYPES (machine-readable; tests/unit/test_protocol_model.py compares this block
 * with shared.messages.catalog.message_models(): a message type added to the code must
 * be added here, as modelled or as abstracted with the reason).
 * BEGIN MESSAGE TYPES
 * ServerFailed       modelled: detector -> fold, server_failed()
 * ServerRecovered    modelled: detector / admin confirmation -> fold, server_recovered()
 * ServerSilent       abstracted: a notice only; the fold ignores it
 * StorageRepaired    abstracted: sets storage_ok in placement, no move; modelled as sok[]
 * FailbackConfirmed  modelled: the admin confirmation (ghost confirmed/sf[])
 * CapacityChanged    abstracted: capacities are constants (left out, see docs)
 * ServerDrained      abstracted: drain is left out (see docs)
 * ServerUndrained    abstracted: drain is left out (see docs)
 * DrainCompleted     abstracted: drain is left out (see docs)
 * CameraMovePlanned  abstracted: the notice of assign(); the state change is modelled
 * CameraMoved        abstracted: the notice of claims_confirmed(); state change modelled
 * CameraPending      abstracted: the notice of place(); Pending is host = target = NONE
 * CameraPreempted    abstracted: the notice of preempt(); the state change is modelled
 * FailbackStarted    abstracted: the notice of server_recovered(); pst[] = FAILING_BACK
 * FailbackCompleted  abstracted: the notice of failback_done(); pst[] = ONLINE
 * ClaimsConfirmed    modelled: answer (ok, CLAIM) on chan ans -> claims_confirmed()
 * ReleasesConfirmed  modelled: answer (ok, RELEASE) on chan ans -> releases_confirmed()
 * CommandRefused     modelled: answer (refused) on chan ans -> refused()
 * FailoversHeld      abstracted: the mass-silence guard only delays a network failover
 * SyncStarted        abstracted: footage sync (R9) is outside the protocol
 * SyncProgress       abstracted: footage sync (R9) is outside the protocol
 * SyncCompleted      abstracted: footage sync (R9) is outside the protocol
 * SyncFailed         abstracted: footage sync (R9) is outside the protocol
 * Heartbeat          modelled: net_up[]/sok[] seen by the detector; hosted -> reconcile()
 * ProbeRequest       modelled: the detector's network condition reads net_up[]
 * ProbeReply         modelled: the detector's network condition reads net_up[]
 * Command            modelled: chan net {server, camera, action, epoch, fence}
 * CommandResult      modelled: chan ans {server, camera, action, epoch, ok, seen}
 * ListSegments       abstracted: footage sync (R9) is outside the protocol
 * SegmentList        abstracted: footage sync (R9) is outside the protocol
 * FetchSegment       abstracted: footage sync (R9) is outside the protocol
 * FetchResult        abstracted: footage sync (R9) is outside the protocol
 * ReadChunk          abstracted: footage sync (R9) is outside the protocol
 * DropSegment        abstracted: footage sync (R9) is outside the protocol
 * DropResult         abstracted: footage sync (R9) is outside the protocol
 * FailbackRequest    modelled: the admin confirmation in proctype env
 * Reply              abstracted: the admin's answer; a refusal changes nothing
 * CapacityRequest    abstracted: capacities are constants (left out, see docs)
 * DrainRequest       abstracted: drain is left out (see docs)
 * FaultRequest       abstracted: the simulator's fault injection; env plays that part
 * END MESSAGE TYPES
 */

/* ---- bounds ---- */
#ifndef NS
#define NS 3            /* servers */
#endif
#ifndef NC
#define NC 4            /* cameras */
#endif
#ifndef MAXLC
#define MAXLC 2         /* leader changes (placement lease epochs) */
#endif
#ifndef MAXSF
#define MAXSF 2         /* server faults: network down or storage failed */
#endif
#ifndef MAXMF
#define MAXMF 2         /* message faults: a command lost or duplicated, an answer lost */
#endif
#ifndef NETCAP
#define NETCAP 16       /* commands in flight at once (an assertion says if too few) */
#endif
#ifndef ANSCAP
#define ANSCAP 8        /* answers on their way to the fold at once (likewise) */
#endif

#define NONE 7          /* no server / no camera */
#define NOCAM NC        /* an announcement: an empty command that carries the fence */
#define CLAIM 0
#define RELEASE 1

/* server state in placement (state.py ServerState) */
#define ONLINE 0
#define NETF 1
#define STORF 2
#define FB 3
/* detector liveness (detector.py Liveness; PROBING folds into UP) */
#define UP 0

/* priorities (planner.py PRIORITY_ORDER) */
#define HIGH 0
#define MEDIUM 1
#define LOW 2

#define bit(s) (1 << (s))
#define has(hm, s) (((hm) >> (s)) & 1)
#define alive(s) (pst[s] == ONLINE || pst[s] == FB)
#define PENDING(c) (host[c] == NONE && target[c] == NONE)
/* state._channels: a camera holds a channel on s (R4) */
#define HOLDS(c, s) (host[c] == s || target[c] == s || has(rf[c], s) || has(ra[c], s) || \
  has(lo[c], s))

/* ---- the cluster config: capacities, homes, priorities, failback modes ----
 * Defaults (3 servers, 4 cameras): s0 cap 2, s1 cap 1, s2 cap 2 (5 channels, 4 cameras);
 * c0 home s0 HIGH, c1 home s0 MEDIUM make-before-break, c2 home s1 LOW make-before-break,
 * c3 home s2 LOW. A failure of s1 sends c2 to s2 (a low guest); a failure of s0 then
 * leaves c0 (high) without a channel, and it preempts c2. */
hidden byte cap[NS];     /* constants, set once by init: kept out of the state vector */
hidden byte home[NC];
hidden byte prio[NC];
hidden byte mbb[NC];
hidden byte order[NC];   /* cameras in placement order: priority, then id */

/* ---- placement state (state.py Placement, CameraSlot, ServerSlot) ---- */
byte pst[NS];            /* ServerSlot.state */
byte host[NC];           /* CameraSlot.host */
byte target[NC];         /* CameraSlot.target */
byte rf[NC];             /* CameraSlot.release_from, a set of servers */
byte ra[NC];             /* CameraSlot.release_after, a set of servers */
byte lo[NC];             /* CameraSlot.left_on, a set of servers (failed while holding it) */
byte pby[NC];            /* CameraSlot.preempted_by */
byte ep[NC];             /* CameraSlot.epoch (per camera: see docs) */
byte fence = 1;          /* the placement leader's lease epoch (lease.py Term.epoch) */

/* ---- agents (heartbeat/app.py Agent, ledger.py EpochLedger, recorder) ---- */
byte rec[NS * NC];       /* epoch the recorder records camera c under on s, 0: not */
byte seen[NS * NC];      /* EpochLedger.seen(camera) */
byte fseen[NS];          /* EpochLedger.fence("placement") */
#define REC(s, c) rec[(s) * NC + (c)]
#define SEEN(s, c) seen[(s) * NC + (c)]

/* ---- environment and detector ---- */
bit net_up[NS];          /* the server's connection (heartbeats and probe) */
bit sok[NS];             /* its storage is healthy (what its heartbeat reports) */
byte det[NS];            /* detector.py ServerView.liveness */
bit sf[NS];              /* ghost: storage failure declared, no confirmation since */
bit adm[NS];              /* the administrator has asked to confirm (blaze failback) */
bit live_settled, live_pending;  /* set by check() from the state (liveness runs) */
byte lc, srvf, msgf;     /* faults used */

/* commands (Command) and answers (CommandResult), kept sorted: as sets they lose,
 * duplicate and reorder (see proctype agent) */
chan net = [NETCAP] of { byte, byte, byte, byte, byte };       /* s, c, action, epoch, fence */
chan ans = [ANSCAP] of { byte, byte, byte, byte, bit, byte };  /* s, c, action, epoch, ok, seen */

/* scratch for the atomic steps: not part of the state vector */
hidden byte hi, hj, hk, hn, hm, ht, best, room;
hidden byte cand, unplaced, waiting, victims, taken0, taken1, taken2, taken3;
hidden byte chosen[NC];
hidden byte reclaim, displaced;
hidden byte ok, todo, spared, gi;
hidden short fnow, fafter;


/* ---------------------------------------------------------------- placement ---- */

inline holding(s, out) {       /* Placement.load(s), state._channels: channels held or
                                * reserved on s, a channel left on it when it failed too */
  out = 0;
  for (hk : 0 .. NC - 1) {
    if
    :: HOLDS(hk, s) -> out++
    :: else -> skip
    fi
  }
}

#define TAKEN(s) (s == 0 -> taken0 : (s == 1 -> taken1 : (s == 2 -> taken2 : taken3)))

inline left(s, out) {          /* planner.Spare.left over FreeChannels */
  if
  :: alive(s) ->
     holding(s, out);
     if
     :: out + TAKEN(s) < cap[s] -> out = cap[s] - out - TAKEN(s)
     :: else -> out = 0
     fi
  :: else -> out = 0
  fi
}

inline take(s) {
  if
  :: s == 0 -> taken0++
  :: s == 1 -> taken1++
  :: s == 2 -> taken2++
  :: else -> taken3++
  fi
}

inline assign(c, s) {          /* Placement._assign: a move, under a fresh epoch */
  target[c] = s;
  lo[c] = lo[c] & ~bit(s);     /* its claim there, under the newer epoch, replaces it */
  ep[c]++
}

inline plan(cands) {           /* planner.plan: home if free, else most free, lowest id */
  taken0 = 0; taken1 = 0; taken2 = 0; taken3 = 0;
  for (hi : 0 .. NC - 1) {
    hj = order[hi];
    chosen[hj] = NONE;
    if
    :: has(cands, hj) ->
       left(home[hj], hn);
       if
       :: hn > 0 -> chosen[hj] = home[hj]
       :: else ->
          best = NONE; hm = 0;
          for (ht : 0 .. NS - 1) {
            left(ht, hn);
            if
            :: hn > hm -> hm = hn; best = ht
            :: else -> skip
            fi
          }
          chosen[hj] = best
       fi;
       if
       :: chosen[hj] != NONE -> take(chosen[hj])
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
}

inline preempt() {             /* Placement._preempt and planner.choose_victims */
  waiting = 0;
  for (hi : 0 .. NC - 1) {
    if
    :: pby[hi] != NONE && (target[hi] != NONE || rf[hi] != 0 || ra[hi] != 0) ->
       waiting = waiting | bit(pby[hi])
    :: else -> skip
    fi
  }
  victims = 0;
  for (hi : 0 .. NC - 1) {
    hj = order[hi];
    if
    :: has(unplaced, hj) && prio[hj] == HIGH && !has(waiting, hj) ->
       /* the low guest with the lowest (host, camera), not yet taken */
       best = NONE;
       for (ht : 0 .. NS - 1) {
         for (hk : 0 .. NC - 1) {
           if
           :: best == NONE && prio[hk] == LOW && host[hk] == ht && target[hk] == NONE && host[hk] != home[hk] && ra[hk] == 0 && !has(victims, hk) -> best = hk
           :: else -> skip
           fi
         }
       }
       if
       :: best != NONE ->
          victims = victims | bit(best);
          rf[best] = bit(host[best]); host[best] = NONE; pby[best] = hj; ep[best]++
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
}

inline place(cands) {          /* Placement._place */
  unplaced = cands;
  do
  :: unplaced != 0 ->
     plan(unplaced);
     todo = unplaced; unplaced = 0; spared = 0;
     for (hi : 0 .. NC - 1) {
       if
       :: has(todo, hi) && chosen[hi] != NONE ->
          /* one left on that server holds a channel there already: the one the plan
           * counted for it is still free, for the cameras not placed yet */
          spared = spared || has(lo[hi], chosen[hi]);
          assign(hi, chosen[hi])
       :: has(todo, hi) && chosen[hi] == NONE -> unplaced = unplaced | bit(hi)
       :: else -> skip
       fi
     };
     if
     :: spared -> skip          /* plan again */
     :: else -> break
     fi
  :: else -> break
  od;
  preempt()
}

inline place_pending() {       /* Placement._place_pending (R5) */
  cand = 0;
  for (hi : 0 .. NC - 1) {
    if
    :: host[hi] == NONE && target[hi] == NONE -> cand = cand | bit(hi)
    :: else -> skip
    fi
  }
  if
  :: cand != 0 -> place(cand)
  :: else -> skip
  fi
}

inline forget_host(c, s) {     /* state._forget_host */
  rf[c] = rf[c] & ~bit(s);
  ra[c] = ra[c] & ~bit(s);
  if
  :: rf[c] == 0 -> pby[c] = NONE
  :: else -> skip
  fi
}

inline failback_done(s) {      /* Placement._maybe_failback_completed */
  ok = 1;
  for (hk : 0 .. NC - 1) {
    if
    :: home[hk] == s && ra[hk] != 0 -> ok = 0
    :: target[hk] == s -> ok = 0
    :: else -> skip
    fi
  }
  if
  :: ok -> pst[s] = ONLINE
  :: else -> skip
  fi
}

inline failbacks_done() {      /* Placement._failbacks_completed */
  for (hm : 0 .. NS - 1) {
    if
    :: pst[hm] == FB -> failback_done(hm)
    :: else -> skip
    fi
  }
}

inline server_failed(s, storage) {   /* Placement._server_failed and state._lose_server */
  pst[s] = (storage -> STORF : NETF);
  reclaim = 0; displaced = 0;
  for (hj : 0 .. NC - 1) {
    if
    :: HOLDS(hj, s) ->
       forget_host(hj, s);
       lo[hj] = lo[hj] | bit(s);   /* it may still record it, unseen */
       if
       :: host[hj] == s ->
          host[hj] = NONE;
          if
          :: target[hj] == NONE && ra[hj] != 0 ->
             /* home failed right after a make-before-break: the old host records still */
             for (ht : 0 .. NS - 1) {
               if
               :: has(ra[hj], ht) && host[hj] == NONE -> host[hj] = ht
               :: else -> skip
               fi
             }
             ra[hj] = 0;
             reclaim = reclaim | bit(hj)
          :: target[hj] == NONE && ra[hj] == 0 -> displaced = displaced | bit(hj)
          :: else -> skip
          fi
       :: else -> skip
       fi;
       if
       :: target[hj] == s ->
          target[hj] = NONE; ra[hj] = 0;
          if
          :: pby[hj] == NONE -> rf[hj] = 0
          :: else -> skip
          fi;
          if
          :: host[hj] == NONE -> displaced = displaced | bit(hj); reclaim = reclaim & ~bit(hj)
          :: else -> reclaim = reclaim | bit(hj); displaced = displaced & ~bit(hj)
          fi
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
  for (hj : 0 .. NC - 1) {
    if
    :: has(reclaim, hj) -> assign(hj, host[hj])
    :: else -> skip
    fi
  }
  if
  :: displaced != 0 ->
     place(displaced);
     /* Left Pending, it takes a fresh epoch (_server_failed's loop over displaced, via
      * _new_epoch): what the failed server still records of it, or a claim still on its
      * way there, is then older than placement's, a stray once the server is back. */
     for (hj : 0 .. NC - 1) {
       if
       :: has(displaced, hj) && target[hj] == NONE -> ep[hj]++
       :: else -> skip
       fi
     }
  :: else -> skip
  fi;
  place_pending();
  failbacks_done()
}

inline move_deliberately(c, to) {    /* Placement._move_deliberately */
  hn = 0;                       /* the set "releasing" */
  if
  :: host[c] != NONE && alive(host[c]) -> hn = hn | bit(host[c])
  :: else -> skip
  fi;
  if
  :: target[c] != NONE && alive(target[c]) -> hn = hn | bit(target[c])
  :: else -> skip
  fi;
  if
  :: mbb[c] && target[c] == NONE && host[c] != NONE && has(hn, host[c]) -> ra[c] = bit(host[c])
  :: else -> rf[c] = (hn | rf[c]) & ~bit(to)
  fi;
  assign(c, to)
}

/* Placement._bring_home and _going_home (R8): the server's cameras away from home, in
 * priority order, as many as it has room for. One left on it when it failed holds a
 * channel there already and costs none; any other takes a free channel now, or waits. */
#define GOING(c, s) (home[c] == s && host[c] != s && target[c] != s)
inline bring_home(s) {
  holding(s, room);
  fnow = cap[s] - room;
  fafter = fnow;
  for (hi : 0 .. NC - 1) {
    if
    :: GOING(hi, s) && has(lo[hi], s) -> fafter++
    :: else -> skip
    fi
  }
  gi = 0;                       /* the place in going[] */
  for (hi : 0 .. NC - 1) {
    hj = order[hi];
    if
    :: GOING(hj, s) ->
       if
       :: gi < fafter && has(lo[hj], s) -> move_deliberately(hj, s)
       :: gi < fafter && !has(lo[hj], s) && fnow > 0 -> move_deliberately(hj, s); fnow--
       :: else -> skip
       fi;
       gi++
    :: else -> skip
    fi
  }
}

inline server_recovered(s) {   /* Placement._server_recovered (R6-R8) */
  if
  :: !alive(s) ->
     pst[s] = FB;
     bring_home(s);
     failback_done(s);
     place_pending()
  :: else -> skip
  fi
}

inline claims_confirmed(s, c, e) {   /* Placement._claims_confirmed */
  if
  :: target[c] == s && ep[c] == e && rf[c] == 0 -> host[c] = s; target[c] = NONE
  :: else -> skip
  fi;
  failbacks_done()
}

inline releases_confirmed(s, c, e) { /* Placement._releases_confirmed */
  if
  :: ep[c] == e && (has(rf[c], s) || has(ra[c], s) || has(lo[c], s)) ->
     if
     :: has(rf[c], s) && host[c] == s -> host[c] = NONE
     :: else -> skip
     fi;
     forget_host(c, s);
     lo[c] = lo[c] & ~bit(s);
     /* A failed server's freed channel is of no use yet: nothing more. Else
      * Placement._come_home: a home with a channel freed takes back its cameras still
      * away (a failback that found it full left them there), before Pending ones get
      * the channels (drain is not modelled: alive is _come_home's whole condition) */
     if
     :: alive(s) ->
        bring_home(s);
        place_pending();
        failbacks_done()
     :: else -> skip
     fi
  :: else -> skip
  fi
}

inline refused(c, e, sn) {     /* Placement._refused: re-issue above the epoch seen */
  if
  :: ep[c] == e ->
     if
     :: sn >= ep[c] -> ep[c] = sn
     :: else -> skip
     fi;
     if
     :: target[c] != NONE -> assign(c, target[c])
     :: target[c] == NONE && (rf[c] != 0 || ra[c] != 0 || lo[c] != 0) -> ep[c]++
     :: else -> skip
     fi
  :: else -> skip
  fi
}

/* ------------------------------------------------------------ commands, sent ---- */

inline send(s, c, a, e) {      /* PlacementService._send: stamped with this leader's fence */
  ok = (net ?? [eval(s), eval(c), eval(a), eval(e), eval(fence)]);  /* in flight */
  if
  :: ok -> skip
  :: else ->
     /* NETCAP must hold every live command: a full channel would lose one for free */
     assert(nfull(net));
     net !! s, c, a, e, fence
  fi
}

inline outstanding() {         /* Placement.outstanding_commands and state._steps */
  for (hj : 0 .. NC - 1) {
    if
    :: rf[hj] != 0 ->
       for (ht : 0 .. NS - 1) {
         if
         :: has(rf[hj], ht) -> send(ht, hj, RELEASE, ep[hj])
         :: else -> skip
         fi
       }
#ifdef MUTANT_BBM
       if   /* the bug: the claim goes out with the releases, not after their acks */
       :: target[hj] != NONE -> send(target[hj], hj, CLAIM, ep[hj])
       :: else -> skip
       fi
#endif
    :: rf[hj] == 0 && target[hj] != NONE -> send(target[hj], hj, CLAIM, ep[hj])
    :: rf[hj] == 0 && target[hj] == NONE && ra[hj] != 0 ->
       for (ht : 0 .. NS - 1) {
         if
         :: has(ra[hj], ht) -> send(ht, hj, RELEASE, ep[hj])
         :: else -> skip
         fi
       }
    :: else -> skip
    fi
  }
  /* a server back from a failure releases what was left on it (_leftover_releases,
   * under the camera's current epoch; merged with the releases above: one per camera) */
  for (ht : 0 .. NS - 1) {
    if
    :: alive(ht) ->
       for (hj : 0 .. NC - 1) {
         if
         :: has(lo[hj], ht) -> send(ht, hj, RELEASE, ep[hj])
         :: else -> skip
         fi
       }
    :: else -> skip
    fi
  }
}

inline reconcile(s) {          /* PlacementService._on_heartbeat: Placement.strays/missing */
  for (hj : 0 .. NC - 1) {
    if
    :: REC(s, hj) != 0 && ep[hj] > REC(s, hj) && !has(rf[hj], s) && !has(ra[hj], s) && !(has(lo[hj], s) && alive(s)) && target[hj] != s && !(host[hj] == s && target[hj] == NONE) && !(home[hj] == s && PENDING(hj) && !alive(s)) ->
       /* a stray; not one left on s while s is up (its release is outstanding); not,
        * while s is failed, one of its own cameras left Pending: its failback brings it
        * home where it records (no gap), or leaves it Pending */
       send(s, hj, RELEASE, ep[hj])
    :: REC(s, hj) == 0 && host[hj] == s && target[hj] == NONE ->
       send(s, hj, CLAIM, ep[hj])                         /* missing */
    :: else -> skip
    fi
  }
}

/* ------------------------------------------------------------------ properties ---- */

/* S1 single recorder: at most one server records a camera under the newest epoch under
 * which any server records it, and at most one under placement's current epoch. */
inline check_single() {
  for (hj : 0 .. NC - 1) {
    hm = 0; hn = 0; ht = 0;
    for (hk : 0 .. NS - 1) {
      if
      :: REC(hk, hj) > hm -> hm = REC(hk, hj)
      :: else -> skip
      fi;
      if
      :: REC(hk, hj) != 0 && REC(hk, hj) == ep[hj] -> ht++
      :: else -> skip
      fi
    }
    for (hk : 0 .. NS - 1) {
      if
      :: hm != 0 && REC(hk, hj) == hm -> hn++
      :: else -> skip
      fi
    }
    assert(hn <= 1 && ht <= 1)
  }
}

/* S2 break-before-make: while a release of a camera is unconfirmed, no server records it
 * under its current epoch (the claim waits for the releases, R8). */
inline check_bbm() {
  for (hj : 0 .. NC - 1) {
    for (hk : 0 .. NS - 1) {
      assert(!(rf[hj] != 0 && REC(hk, hj) != 0 && REC(hk, hj) == ep[hj]))
    }
  }
}

/* S3 capacity (R4), as placement counts channels: held or reserved on a server. */
inline check_capacity() {
  for (hm : 0 .. NS - 1) {
    holding(hm, hn);
    assert(hn <= cap[hm])
  }
}

/* S3p capacity, as the recorders count: cameras a server really records. */
inline check_recording_capacity() {
  for (hm : 0 .. NS - 1) {
    hn = 0;
    for (hj : 0 .. NC - 1) {
      if
      :: REC(hm, hj) != 0 -> hn++
      :: else -> skip
      fi
    }
    assert(hn <= cap[hm])
  }
}

/* S4 storage failback (R7): a storage-failed server without a confirmation since is
 * never made a camera's host or target, so no claim for it is sent. */
inline check_storage() {
  for (hj : 0 .. NC - 1) {
    assert(!(host[hj] != NONE && sf[host[hj]]) && !(target[hj] != NONE && sf[target[hj]]))
  }
}

/* S5 a camera is never both Pending (no host, no target) and recorded, under its
 * current epoch, by a server placement counts as up. */
inline check_pending() {
  for (hj : 0 .. NC - 1) {
    for (hk : 0 .. NS - 1) {
      assert(!(host[hj] == NONE && target[hj] == NONE && alive(hk) && REC(hk, hj) != 0 && REC(hk, hj) == ep[hj]))
    }
  }
}

#define NOT_ELSEWHERE(c, s) (s == host[c] || !net_up[s] || REC(s, c) == 0)
#define NOT_LEFT_UP(c, s) (!has(lo[c], s) || !alive(s))   /* no release of it left to do */
#if NC == 1
#define LOAD(s) (HOLDS(0, s))
#define NO_PENDING (!PENDING(0))
#define ALL_SETTLED (SETTLED(0))
#elif NC == 2
#define LOAD(s) (HOLDS(0, s) + HOLDS(1, s))
#define NO_PENDING (!PENDING(0) && !PENDING(1))
#define ALL_SETTLED (SETTLED(0) && SETTLED(1))
#elif NC == 3
#define LOAD(s) (HOLDS(0, s) + HOLDS(1, s) + HOLDS(2, s))
#define NO_PENDING (!PENDING(0) && !PENDING(1) && !PENDING(2))
#define ALL_SETTLED (SETTLED(0) && SETTLED(1) && SETTLED(2))
#else
#define LOAD(s) (HOLDS(0, s) + HOLDS(1, s) + HOLDS(2, s) + HOLDS(3, s))
#define NO_PENDING (!PENDING(0) && !PENDING(1) && !PENDING(2) && !PENDING(3))
#define ALL_SETTLED (SETTLED(0) && SETTLED(1) && SETTLED(2) && SETTLED(3))
#endif
#define FREE(s) (alive(s) && cap[s] > LOAD(s))
#if NS == 1
#define SOME_FREE (FREE(0))
#define NOWHERE_ELSE(c) (NOT_ELSEWHERE(c, 0))
#define NO_LEFT_UP(c) (NOT_LEFT_UP(c, 0))
#elif NS == 2
#define SOME_FREE (FREE(0) || FREE(1))
#define NOWHERE_ELSE(c) (NOT_ELSEWHERE(c, 0) && NOT_ELSEWHERE(c, 1))
#define NO_LEFT_UP(c) (NOT_LEFT_UP(c, 0) && NOT_LEFT_UP(c, 1))
#else
#define SOME_FREE (FREE(0) || FREE(1) || FREE(2))
#define NOWHERE_ELSE(c) (NOT_ELSEWHERE(c, 0) && NOT_ELSEWHERE(c, 1) && NOT_ELSEWHERE(c, 2))
#define NO_LEFT_UP(c) (NOT_LEFT_UP(c, 0) && NOT_LEFT_UP(c, 1) && NOT_LEFT_UP(c, 2))
#endif
#define SETTLED(c) (((host[c] != NONE && target[c] == NONE && rf[c] == 0 && ra[c] == 0 \
  && REC(host[c], c) == ep[c] && (pst[home[c]] != ONLINE || host[c] == home[c]) \
  && NOWHERE_ELSE(c)) || (PENDING(c) && !SOME_FREE)) && NO_LEFT_UP(c))

#ifdef PROJECT
/* model/check.sh --cross-check: one line per step with what the properties read (the
 * placement state, the servers' conditions, the budgets, and per camera the order of
 * placement's epoch and the epochs its recorders record under), compiled with -DPRINTF.
 * The lines of a run with the canonical form and of one without (-DNOCANON) must be the
 * same set: the reductions lose no state the properties could tell apart. */
hidden byte p_k, p_c, p_j, p_w, p_r, p_v;
hidden byte p_rank[NC * (NS + 1)];  /* per camera: placement's epoch, then each recorder's */
inline rank(v) {                 /* 1 + how many of the camera's epochs are below v */
  p_r = 0;
  if
  :: v != 0 ->
     p_r = 1;
     for (p_w : 1 .. v - 1) {
       p_v = (p_w == ep[p_c]);
       for (p_j : 0 .. NS - 1) { p_v = p_v || REC(p_j, p_c) == p_w };
       p_r = p_r + p_v
     }
  :: else -> skip
  fi
}
/* (spin -a hides a variable that only printf reads, such as sf[] without PROP_storage,
 * and pan then prints stale values of it: check.sh compiles with -o2, which keeps it) */
#define PSRV(i) printf(" %d%d%d%d%d%d", pst[i], det[i], net_up[i], sok[i], sf[i], adm[i])
#define PRANK(i, k) ((k) <= NS -> p_rank[(i) * (NS + 1) + (k)] : 0)
#define PCAM(i) printf(" %d.%d.%d.%d.%d.%d:%d,%d,%d,%d", host[i], target[i], rf[i], ra[i], lo[i], pby[i], \
  PRANK(i, 0), PRANK(i, 1), PRANK(i, 2), PRANK(i, 3))
inline project() {
  for (p_c : 0 .. NC - 1) {
    rank(ep[p_c]);
    p_rank[p_c * (NS + 1)] = p_r;
    for (p_k : 0 .. NS - 1) {
      rank(REC(p_k, p_c));
      p_rank[p_c * (NS + 1) + 1 + p_k] = p_r
    }
  }
  printf("P");
  PSRV(0);
#if NS > 1
  PSRV(1);
#endif
#if NS > 2
  PSRV(2);
#endif
  PCAM(0);
#if NC > 1
  PCAM(1);
#endif
#if NC > 2
  PCAM(2);
#endif
#if NC > 3
  PCAM(3);
#endif
  printf(" %d%d%d\n", lc, srvf, msgf)
}
#endif

inline check() {
#ifdef PROJECT
  project();
#endif
#ifdef PROP_single
  check_single();
#endif
#ifdef PROP_bbm
  check_bbm();
#endif
#ifdef PROP_capacity
  check_capacity();
#endif
#ifdef PROP_recording_capacity
  check_recording_capacity();
#endif
#ifdef PROP_storage
  check_storage();
#endif
#ifdef PROP_pending
  check_pending();
#endif
#ifdef LIVENESS
  /* the liveness formulas read these (tl_spin cannot parse the expressions themselves) */
  live_settled = ALL_SETTLED;
  live_pending = (NO_PENDING || !SOME_FREE);
#endif
  skip
}

/* ------------------------------------------------------------- canonical form ---- */
/* After every step that can change an epoch, a fence or a ledger, the state is put in a
 * canonical form. None of its four parts changes what can happen next that a property
 * can tell; they merge states that differ only in what cannot matter any more
 * (docs/protocol.md, "Reductions"; model/check.sh --cross-check compares the states
 * reached with and without them).
 *
 * Dead messages are removed. A message is dead when its delivery can change nothing,
 * now or later, beyond taking it out of the channel (removing it at once is the same as
 * delivering it at once, an interleaving the model has anyway):
 *   - a command whose fence is below the agent's (_check_fence refuses it, and a
 *     deposed leader's refusal is not published), or an announcement whose fence the
 *     agent has seen;
 *   - a command of the agent's fence whose epoch is below the agent's ledger for the
 *     camera (refused, with no new fence) and below placement's epoch for the camera:
 *     its refusal names an epoch placement no longer has, and _refused ignores it;
 *   - an answer whose epoch is not placement's epoch for the camera: _claims_confirmed,
 *     _releases_confirmed and _refused ignore it; a confirmed claim by a server that is
 *     not the camera's target, or a confirmed release by a server placement is not
 *     waiting for (in none of release_from, release_after, left_on): only a new
 *     decision (a new epoch) makes a server a target or a releasing host again, and a
 *     server is left a camera only when it fails holding it: as its target, or its
 *     host with no move under way (then the camera takes a new epoch: _lose_server
 *     displaces or reclaims it), or as a releasing host (a host with a move under way
 *     is one; its answer was then not dead). (_claims_confirmed runs
 *     _failbacks_completed even so. That can only complete a failback sooner than the answers to the moves that made it
 *     completable, a recovery of another server (_server_recovered) moving cameras off
 *     it, would; FAILING_BACK and ONLINE differ in nothing a safety property reads.)
 *   Epochs only grow, so a dead message stays dead.
 *   (The mutant's agent claims without an epoch check: there a stale claim is live.)
 *
 * Epochs are renumbered, per camera, to 1, 2, 3, ... in their order (0, "none", stays
 * 0). The protocol only compares epochs of the same camera (the agent's ledger, the
 * fold's epoch checks, strays) and every new one is above all in use (_new_epoch), so
 * two states that differ only by an order-preserving renaming of a camera's epochs
 * have the same futures. */
#ifdef MUTANT_BBM
#define STALE_IS_DEAD(a) (a != CLAIM)
#else
#define STALE_IS_DEAD(a) 1
#endif
#define DEAD_COMMAND(s, c, a, e, f) (f < fseen[s] || (f == fseen[s] && \
  (c == NOCAM || (e < SEEN(s, c) && e < ep[c] && STALE_IS_DEAD(a)))))
#define DEAD_ANSWER(s, c, a, e, good) (e != ep[c] || (good && a == CLAIM && target[c] != s) || \
  (good && a == RELEASE && !has(rf[c], s) && !has(ra[c], s) && !has(lo[c], s)))

/* A command the agent has carried out already, whose answer the fold no longer needs
 * (or has, with no message fault left to lose it): carried out again it changes
 * nothing, under no fence, ledger or recording the agent can have later. (Its epoch is
 * the agent's newest for the camera, and only this one action is ever sent to this
 * server for this camera under this epoch: check_once() asserts it.) */
#ifdef MUTANT_BBM
#define DONE_ALREADY(s, c, a, e, f) 0   /* its agent may record a stale claim over it */
#else
#define DONE_ALREADY(s, c, a, e, f) (c != NOCAM && f == fseen[s] && e == SEEN(s, c) && \
  REC(s, c) == (a == CLAIM -> e : 0))
#endif
inline IF_DONE(s, c, a, e, f) {
  if
  :: DONE_ALREADY(s, c, a, e, f) ->
     q_r = DEAD_ANSWER(s, c, a, e, 1);
     if
     :: !q_r && msgf == MAXMF ->   /* its answer waits in the channel and cannot be lost */
        for (q_k : 1 .. wn) {
          if
          :: ws[q_k - 1] == s && wc[q_k - 1] == c && wa[q_k - 1] == a && we[q_k - 1] == e && wok[q_k - 1] -> q_r = 1
          :: else -> skip
          fi
        }
     :: else -> skip
     fi;
     if
     :: q_r -> skip
     :: else -> q_j++
     fi
  :: else -> q_j++
  fi
}

hidden byte q_n, q_i, q_j, q_k, q_c, q_r;
hidden byte qs[NETCAP], qc[NETCAP], qa[NETCAP], qe[NETCAP], qf[NETCAP];     /* commands */
hidden byte ws[ANSCAP], wc[ANSCAP], wa[ANSCAP], we[ANSCAP], wok[ANSCAP], wsn[ANSCAP];
hidden byte wn;                                                            /* answers */
hidden int used;
hidden byte emap[32];

#define USE(v) assert(v < 32); used = used | (1 << (v))
#define RENAME(v) v = emap[v]

inline canonical() {
  /* take every message out, keep the live ones */
  q_n = len(ans); wn = 0;
  for (q_i : 1 .. q_n) {
    ans ? ws[wn], wc[wn], wa[wn], we[wn], wok[wn], wsn[wn];
    if
    :: DEAD_ANSWER(ws[wn], wc[wn], wa[wn], we[wn], wok[wn]) -> skip
    :: else -> wn++
    fi
  }
  q_n = len(net); q_j = 0;
  for (q_i : 1 .. q_n) {
    net ? qs[q_j], qc[q_j], qa[q_j], qe[q_j], qf[q_j];
    if
    :: DEAD_COMMAND(qs[q_j], qc[q_j], qa[q_j], qe[q_j], qf[q_j]) -> skip
    :: else -> IF_DONE(qs[q_j], qc[q_j], qa[q_j], qe[q_j], qf[q_j])
    fi
  }
  for (q_c : 0 .. NC - 1) {
    used = 0;
    USE(ep[q_c]);
    for (q_k : 0 .. NS - 1) { USE(REC(q_k, q_c)); USE(SEEN(q_k, q_c)) }
    for (q_i : 1 .. q_j) { if :: qc[q_i - 1] == q_c -> USE(qe[q_i - 1]) :: else -> skip fi }
    for (q_i : 1 .. wn) {
      if :: wc[q_i - 1] == q_c -> USE(we[q_i - 1]); USE(wsn[q_i - 1]) :: else -> skip fi
    }
    q_r = 0; emap[0] = 0;
    for (q_k : 1 .. 31) {
      if :: (used >> q_k) & 1 -> q_r++ :: else -> skip fi;
      emap[q_k] = q_r
    }
    RENAME(ep[q_c]);
    for (q_k : 0 .. NS - 1) { RENAME(REC(q_k, q_c)); RENAME(SEEN(q_k, q_c)) }
    for (q_i : 1 .. q_j) { if :: qc[q_i - 1] == q_c -> RENAME(qe[q_i - 1]) :: else -> skip fi }
    for (q_i : 1 .. wn) {
      if :: wc[q_i - 1] == q_c -> RENAME(we[q_i - 1]); RENAME(wsn[q_i - 1]) :: else -> skip fi
    }
  }
  /* An agent's fence matters only against the fences of the commands on their way to
   * it (every later command carries the current fence, at least as high): raising it
   * to the lowest of those, or to the current fence when none is on its way, changes
   * what no command can tell (it refuses what it refused before, nothing else). */
  for (q_k : 0 .. NS - 1) {
    q_r = fence;
    for (q_i : 1 .. q_j) { if :: qs[q_i - 1] == q_k && qf[q_i - 1] < q_r -> q_r = qf[q_i - 1] :: else -> skip fi }
    fseen[q_k] = q_r
  }
  /* back in, sorted */
  for (q_i : 1 .. q_j) { net !! qs[q_i - 1], qc[q_i - 1], qa[q_i - 1], qe[q_i - 1], qf[q_i - 1] }
  for (q_i : 1 .. wn) {
    ans !! ws[q_i - 1], wc[q_i - 1], wa[q_i - 1], we[q_i - 1], wok[q_i - 1], wsn[q_i - 1]
  }
}

inline settle() {               /* the end of every step that may change an epoch */
#ifndef NOCANON
  canonical();
#endif
  check()
}

/* The end of every step of the fold: its commands go out at once (PlacementService.
 * _decided calls _send_wanted right after a fold; the sender's wakes retry later). */
inline decided() {
  outstanding();
  settle()
}

/* ------------------------------------------------------------------ processes ---- */
/* Each step is one atomic action of one part of the system: which message is taken or
 * which fault happens is chosen nondeterministically (every choice is explored), and the
 * rest of the step, deterministic, runs as one d_step (one transition, no intermediate
 * states). What one step does, the code does in one go: an agent carries out one command
 * before it takes the next (Agent._on_command), the fold applies one event of the log
 * at a time (Placement.apply), the sender and the heartbeat repair read one state. */

/* One agent per server (heartbeat/app.py Agent._on_command and _check_fence). It takes
 * any command addressed to it (reordering); a delivery may leave the command in flight
 * (a duplicate, counted as a message fault) and a command may be lost (a message fault).
 * While its network is down nothing reaches it; a command to it may then be dropped for
 * free (no responders). */
hidden byte cmd_c, cmd_a, cmd_e, cmd_f;

inline answer(s, c, a, e, good, sn) {  /* the CommandResult, once (a set) */
  ok = (ans ?? [eval(s), eval(c), eval(a), eval(e), eval(good), eval(sn)]);
  if
  :: ok -> skip
  :: else ->
     assert(nfull(ans));        /* ANSCAP must hold every live answer */
     ans !! s, c, a, e, good, sn
  fi
}

/* The premise of DONE_ALREADY: a command under the epoch the agent has seen last for
 * the camera finds the recording that epoch's command left (no claim and release of one
 * camera to one server under one epoch). A failure here is the model's reasoning, not
 * the protocol. */
inline check_once(s) {
  assert(cmd_e > SEEN(s, cmd_c) || REC(s, cmd_c) == (cmd_a == CLAIM -> cmd_e : 0))
}

inline execute(s) {
  if
  :: cmd_f < fseen[s] -> skip  /* a deposed leader: whole command refused; not published */
  :: else ->
     fseen[s] = cmd_f;
     if
     :: cmd_c == NOCAM -> skip /* an announcement: only the fence */
#ifdef MUTANT_BBM
     :: cmd_c != NOCAM && cmd_a == CLAIM ->  /* the bug: no epoch check for a claim */
        if
        :: cmd_e > SEEN(s, cmd_c) -> SEEN(s, cmd_c) = cmd_e
        :: else -> skip
        fi;
        REC(s, cmd_c) = cmd_e;
        answer(s, cmd_c, cmd_a, cmd_e, 1, 0)
#endif
     :: else ->
        if
        :: cmd_e >= SEEN(s, cmd_c) ->
           check_once(s);
           SEEN(s, cmd_c) = cmd_e;
           REC(s, cmd_c) = (cmd_a == CLAIM -> cmd_e : 0);
           answer(s, cmd_c, cmd_a, cmd_e, 1, 0)
        :: else ->
           answer(s, cmd_c, cmd_a, cmd_e, 0, SEEN(s, cmd_c))
        fi
     fi
  fi
}

hidden byte h_dup;
#define PICK(C, A) \
  :: net_up[me] && net ?? [eval(me), C, A, _, _] -> cmd_c = C; cmd_a = A; h_dup = 0 \
  :: msgf < MAXMF && net_up[me] && net ?? [eval(me), C, A, _, _] -> \
     cmd_c = C; cmd_a = A; h_dup = 1; msgf++
#define DROP(C, A) \
  :: d_step { net ?? [eval(me), C, A, _, _] && !net_up[me] -> net ?? eval(me), C, A, _, _ } \
  :: d_step { net ?? [eval(me), C, A, _, _] && net_up[me] && msgf < MAXMF -> \
       msgf++; net ?? eval(me), C, A, _, _ }

proctype agent(byte me) {
end:
  do
  :: atomic {
       if
       PICK(0, CLAIM)
       PICK(0, RELEASE)
#if NC > 1
       PICK(1, CLAIM)
       PICK(1, RELEASE)
#endif
#if NC > 2
       PICK(2, CLAIM)
       PICK(2, RELEASE)
#endif
#if NC > 3
       PICK(3, CLAIM)
       PICK(3, RELEASE)
#endif
       PICK(NOCAM, CLAIM)
       fi;
       /* of a server's commands for one camera and action, the oldest epoch first (the
        * newer one first only makes the agent refuse the older: a dead message) */
       d_step {
         if
         :: h_dup == 0 -> net ?? eval(me), eval(cmd_c), eval(cmd_a), cmd_e, cmd_f
         :: else -> net ?? <eval(me), eval(cmd_c), eval(cmd_a), cmd_e, cmd_f>
         fi;
         execute(me);
         settle() } }
  DROP(0, CLAIM)
  DROP(0, RELEASE)
#if NC > 1
  DROP(1, CLAIM)
  DROP(1, RELEASE)
#endif
#if NC > 2
  DROP(2, CLAIM)
  DROP(2, RELEASE)
#endif
#if NC > 3
  DROP(3, CLAIM)
  DROP(3, RELEASE)
#endif
  DROP(NOCAM, CLAIM)
  od
}

/* The placement leader's sender (PlacementService._sender_loop / _send_wanted): every
 * outstanding command not already in flight, under the current lease epoch. */
proctype sender() {
end:
  do
  :: d_step { outstanding(); check() }
  od
}

/* The agents' answers reach the log (PlacementService._publish_outcome) in any order and
 * the fold takes them in (Placement.apply); an answer may be lost (a message fault: the
 * request timed out, and the command is sent again). Any server's answer about any
 * camera may come next. */
hidden byte a_s, a_c, a_a, a_e, a_ok, a_seen;

#define TAKE(S, C) :: ans ?? [S, C, _, _, _, _] -> a_s = S; a_c = C
#define LOSE(S, C) :: d_step { msgf < MAXMF && ans ?? [S, C, _, _, _, _] -> \
  msgf++; ans ?? S, C, _, _, _, _ }
#if NS == 1
#define TAKES(C) TAKE(0, C)
#define LOSES(C) LOSE(0, C)
#elif NS == 2
#define TAKES(C) TAKE(0, C) TAKE(1, C)
#define LOSES(C) LOSE(0, C) LOSE(1, C)
#else
#define TAKES(C) TAKE(0, C) TAKE(1, C) TAKE(2, C)
#define LOSES(C) LOSE(0, C) LOSE(1, C) LOSE(2, C)
#endif

proctype folder() {
end:
  do
  :: atomic {
       if
       TAKES(0)
#if NC > 1
       TAKES(1)
#endif
#if NC > 2
       TAKES(2)
#endif
#if NC > 3
       TAKES(3)
#endif
       fi;
       d_step {
         ans ?? eval(a_s), eval(a_c), a_a, a_e, a_ok, a_seen;
         if
         :: a_ok && a_a == CLAIM -> claims_confirmed(a_s, a_c, a_e)
         :: a_ok && a_a == RELEASE -> releases_confirmed(a_s, a_c, a_e)
         :: else -> refused(a_c, a_e, a_seen)
         fi;
         decided() } }
  LOSES(0)
#if NC > 1
  LOSES(1)
#endif
#if NC > 2
  LOSES(2)
#endif
#if NC > 3
  LOSES(3)
#endif
  od
}

/* Heartbeat reconciliation: a round of heartbeats, of every server whose heartbeats
 * reach placement (one process, so that weak fairness reaches every server). One round
 * at once covers the servers' heartbeats at different times: a repair sent early may
 * stay in flight as long as any interleaving needs. */
proctype reconciler() {
end:
  do
  :: d_step { for (hn : 0 .. NS - 1) { if :: net_up[hn] -> reconcile(hn) :: else -> skip fi }; check() }
  od
}

/* The failure detector (detector.py) and health's confirmation of a storage failback,
 * their decisions folded at once (the log is reliable and ordered; a fold that lags is
 * the same as commands that are slow to arrive).
 *   network failure (R2): silence and a failed probe, both read as net_up[S] == 0;
 *   recovery (R6): heartbeats back and the probe answers, storage reported healthy;
 *   storage failure (R3): a heartbeat reports it, network up or not before;
 *   confirmation (R7): the administrator asked (adm), storage healthy, heartbeating. */
hidden byte ev_s, ev_k;
#define FAIL_NET 0
#define FAIL_STORAGE 1
#define RECOVER 2
#define CONFIRM 3
#define DETECT(S) \
  :: det[S] == UP && !net_up[S] -> ev_s = S; ev_k = FAIL_NET \
  :: det[S] != STORF && net_up[S] && !sok[S] -> ev_s = S; ev_k = FAIL_STORAGE \
  :: det[S] == NETF && net_up[S] && sok[S] -> ev_s = S; ev_k = RECOVER \
  :: adm[S] && det[S] == STORF && net_up[S] && sok[S] -> ev_s = S; ev_k = CONFIRM

proctype detector() {
end:
  do
  :: atomic {
       if
       DETECT(0)
#if NS > 1
       DETECT(1)
#endif
#if NS > 2
       DETECT(2)
#endif
       fi;
       d_step {
         if
         :: ev_k == FAIL_NET || ev_k == FAIL_STORAGE ->
            if
            :: ev_k == FAIL_STORAGE -> det[ev_s] = STORF; sf[ev_s] = 1
            :: else -> det[ev_s] = NETF
            fi;
            server_failed(ev_s, ev_k)
         :: else ->
            if
            :: ev_k == CONFIRM -> adm[ev_s] = 0; sf[ev_s] = 0
            :: else -> skip
            fi;
            det[ev_s] = UP;
            server_recovered(ev_s)
         fi;
         decided() } }
  od
}

/* Faults, repairs and the administrator's request. It may stop at any time (faults
 * stop); a server may then stay down, a storage failure stay unconfirmed. */
#define ENV(S) \
  :: d_step { srvf < MAXSF && net_up[S] -> srvf++; net_up[S] = 0; check() } \
  :: d_step { !net_up[S] -> net_up[S] = 1; check() } \
  :: d_step { srvf < MAXSF && sok[S] -> srvf++; sok[S] = 0; check() } \
  :: d_step { !sok[S] -> sok[S] = 1; check() } \
  :: d_step { !adm[S] && det[S] == STORF && sok[S] && net_up[S] -> adm[S] = 1 }

proctype env() {
  do
  ENV(0)
#if NS > 1
  ENV(1)
#endif
#if NS > 2
  ENV(2)
#endif
  :: d_step { lc < MAXLC -> lc++; fence++;      /* a new placement leader: announcements */
       for (hi : 0 .. NS - 1) { send(hi, NOCAM, CLAIM, 0) };
       skip }   /* (a d_step must not end in a loop: spin 6.5 compiles its exit wrong) */
  :: break
  od
}

init {
  atomic {
    /* the config */
    cap[0] = 2;
#if NS > 1
    cap[1] = 1;
#endif
#if NS > 2
    cap[2] = 2;
#endif
    for (hi : 0 .. NC - 1) { home[hi] = hi % NS; prio[hi] = LOW }
    home[0] = 0; prio[0] = HIGH;
#if NC > 1
    home[1] = 0; prio[1] = MEDIUM; mbb[1] = 1;
#endif
#if NC > 2
    home[2] = 1 % NS; mbb[2] = 1;
#endif
#if NC > 3
    home[3] = 2 % NS;
#endif
    /* placement order: priority, then id */
    hn = 0;
    for (hk : 0 .. 2) {
      for (hi : 0 .. NC - 1) {
        if
        :: prio[hi] == hk -> order[hn] = hi; hn++
        :: else -> skip
        fi
      }
    }
    /* a settled cluster: every camera recorded at home under epoch 1 */
    for (hi : 0 .. NC - 1) {
      host[hi] = home[hi]; target[hi] = NONE; pby[hi] = NONE; ep[hi] = 1;
      REC(home[hi], hi) = 1; SEEN(home[hi], hi) = 1
    }
    for (hi : 0 .. NS - 1) { net_up[hi] = 1; sok[hi] = 1; fseen[hi] = 1 }
    hi = 0; hn = 0; hk = 0;
    for (hm : 0 .. NS - 1) { run agent(hm) }
    hm = 0;
    check();
    run sender(); run reconciler(); run folder(); run detector(); run env()
  }
}

/* ------------------------------------------------------------------ liveness ---- */
/* Under weak fairness, once the environment has stopped (faults stop; a server may stay
 * down, a storage failure may stay unconfirmed):
 *   pending_empty: Pending is empty whenever total free capacity allows it (R5);
 *   recording:     every camera ends up recorded by its host under its epoch, at home if
 *                  its home is up, and by no other reachable server (R4, R6, R8). */

#ifdef LIVENESS
ltl pending_empty { <>[] live_pending }
ltl recording { <>[] live_settled }
#endif
