"""Parameter servers for the CNN, over torch.distributed.rpc (TensorPipe).

Each server holds a shard of the model's parameter tensors (tensor i lives on server
i mod S) and runs the optimizer and learning-rate schedule for its shard. Every step each
worker pushes its gradients to every server and gets the updated shard back, in one RPC per
server. Synchronous (default): a server waits for all W workers' gradients of the step, sums
them (each is already its slice's share of the global batch mean), applies one optimizer
step and answers everyone with the same parameters, so the job trains exactly as one
process with the global batch would. Asynchronous (`--ps_async true`): each push is applied
at once, scaled by W, and answered with the server's current parameters.
"""

import threading

import torch
import torch.distributed.rpc as rpc

_server = None  # this process's ParameterServer (on `ps` processes only)


class ParameterServer:
    def __init__(self, shard, make_optimizer, make_schedule, workers, asynchronous):
        self.params = [torch.nn.Parameter(p.detach().clone()) for p in shard]
        self.optimizer = make_optimizer(self.params)
        self.schedule = make_schedule(self.optimizer)
        self.workers = workers
        self.asynchronous = asynchronous
        self.lock = threading.Lock()
        self.sums = [torch.zeros_like(p) for p in self.params]
        self.pushed = 0
        self.losses = {}  # epoch -> summed loss of every worker's pushes
        self.answer = torch.futures.Future()

    def _apply(self, grads, scale=1.0):
        for p, g in zip(self.params, grads):
            p.grad = g * scale if scale != 1.0 else g
        self.optimizer.step()
        self.schedule.step()
        return [p.detach().clone() for p in self.params]

    def push(self, grads, loss, epoch):
        with self.lock:
            self.losses[epoch] = self.losses.get(epoch, 0.0) + loss
            if self.asynchronous:
                done = torch.futures.Future()
                done.set_result(self._apply(grads, scale=float(self.workers)))
                return done
            for total, g in zip(self.sums, grads):
                total.add_(g)
            self.pushed += 1
            answer = self.answer
            if self.pushed == self.workers:
                updated = self._apply([s.clone() for s in self.sums])
                for total in self.sums:
                    total.zero_()
                self.pushed, self.answer = 0, torch.futures.Future()
                answer.set_result(updated)
            return answer

    def take_loss(self, epoch):
        with self.lock:
            return self.losses.pop(epoch, 0.0)


# RPC entry points: plain module functions, found by name in the server's `ps` module.
@rpc.functions.async_execution
def _push(grads, loss, epoch):
    return _server.push(grads, loss, epoch)


def _take_loss(epoch):
    return _server.take_loss(epoch)


def _server_name(index):
    return f"ps{index}"


def _options(timeout_seconds):
    return rpc.TensorPipeRpcBackendOptions(rpc_timeout=timeout_seconds)


def shard_indexes(n_tensors, servers, index):
    return [i for i in range(n_tensors) if i % servers == index]


def serve(ctx, model, make_optimizer, make_schedule, asynchronous, timeout_seconds):
    """A server's whole life: hold its shard until every worker has finished."""
    global _server
    params = list(model.parameters())
    shard = [params[i] for i in shard_indexes(len(params), ctx.servers, ctx.server_index)]
    _server = ParameterServer(shard, make_optimizer, make_schedule, ctx.workers, asynchronous)
    rpc.init_rpc(_server_name(ctx.server_index), rank=ctx.rank, world_size=ctx.world_size,
                 rpc_backend_options=_options(timeout_seconds))
    rpc.shutdown()  # graceful: returns once every worker has shut down too


class ServerLink:
    """A worker's side: push gradients, pull the updated parameters, one RPC per server."""

    def __init__(self, ctx, model, timeout_seconds):
        self.ctx = ctx
        n = len(list(model.parameters()))
        self.shards = [shard_indexes(n, ctx.servers, s) for s in range(ctx.servers)]
        rpc.init_rpc(f"worker{ctx.rank}", rank=ctx.rank, world_size=ctx.world_size,
                     rpc_backend_options=_options(timeout_seconds))

    def step(self, model, loss_sum, epoch):
        params = list(model.parameters())
        calls = [rpc.rpc_async(_server_name(s), _push, args=(
            [params[i].grad for i in idx], loss_sum if s == 0 else 0.0, epoch))
            for s, idx in enumerate(self.shards)]
        with torch.no_grad():
            for idx, call in zip(self.shards, calls):
                for i, value in zip(idx, call.wait()):
                    params[i].copy_(value)

    def epoch_loss(self, epoch):
        """The epoch's loss summed over every worker (server 0 keeps it; complete once the
        chief's last step of the epoch returned, in synchronous mode)."""
        return rpc.rpc_sync(_server_name(0), _take_loss, args=(epoch,))

    def close(self):
        rpc.shutdown()
