//! [`Replicas`] on MPI (the `mpi` feature), through rsmpi. A rank's failed collective ends the job through MPI's
//! default error handler (MPI_ERRORS_ARE_FATAL), and `mpirun`/`srun` end the other ranks when one dies.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Replicas;

/// The MPI world of this process: held for the whole run (dropping it finalizes MPI).
pub struct MpiWorld {
    // Declared first so it is dropped before the universe finalizes MPI.
    world: SimpleCommunicator,
    local_rank: usize,
    _universe: Universe,
}

/// OpenMPI's MCA parameter, as an environment variable: yield the core while waiting in a collective.
const YIELD_WHEN_IDLE: &str = "OMPI_MCA_mpi_yield_when_idle";

/// Elements per MPI call: MPI counts are C ints, so a longer vector goes in pieces.
const MAX_COUNT: usize = 1 << 30;

impl MpiWorld {
    /// Initializes MPI (once per process; `None` if it already was). Under `mpirun`/`srun` the process joins
    /// the job's world; started alone, it is a world of one.
    pub fn init() -> Option<MpiWorld> {
        // OpenMPI busy-polls inside a collective unless it thinks the machine is oversubscribed; a rank waiting
        // for a slower one then takes a core from the work it waits for, which on a CPU adapter (lavapipe) is the
        // GPU itself (a 0.1 s step took 13 s on 2 cores). Yielding costs microseconds per collective elsewhere.
        // Read at MPI_Init; a value the user set is kept. Called before any thread exists.
        if std::env::var_os(YIELD_WHEN_IDLE).is_none() {
            std::env::set_var(YIELD_WHEN_IDLE, "1");
        }
        // Funneled: only the main thread calls MPI (wgpu's and the signal handler's threads never do).
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        // The ranks that share this machine's memory, in world order: this rank's place among them picks its
        // adapter, whatever the launcher (mpirun, srun) or its environment variables.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Some(MpiWorld {
            world,
            local_rank,
            _universe: universe,
        })
    }
}

impl Replicas for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn barrier(&self) {
        self.world.barrier();
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(send.len(), recv.len(), "all_reduce_sum: buffer lengths");
        for (s, r) in send.chunks(MAX_COUNT).zip(recv.chunks_mut(MAX_COUNT)) {
            self.world.all_reduce_into(s, r, SystemOperation::sum());
        }
    }

    fn all_gather_u64(&self, value: u64) -> Vec<u64> {
        let mut all = vec![0u64; self.ranks()];
        self.world.all_gather_into(&value, &mut all[..]);
        all
    }

    fn gather_f32(&self, values: &[f32]) -> Option<Vec<f32>> {
        // Point to point, each rank's message on its own: MPI_Gatherv's int displacements would cap the total.
        let root = self.world.process_at_rank(0);
        if self.world.rank() != 0 {
            root.send(values);
            return None;
        }
        let mut all = values.to_vec();
        for rank in 1..self.world.size() {
            let (part, _) = self.world.process_at_rank(rank).receive_vec::<f32>();
            all.extend(part);
        }
        Some(all)
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
