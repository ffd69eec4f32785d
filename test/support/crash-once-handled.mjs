// Preloaded with `node --import` by the crash-logging test: once the command has installed its crash
// handlers (or after 5 s, so that a command without them still crashes), throws an uncaught exception
// or leaves a rejection unhandled, as $CRASH says ('exception' or 'rejection').
const started = Date.now();
const timer = setInterval(() => {
  if (process.listenerCount('uncaughtException') === 0 && Date.now() - started < 5_000) return;
  clearInterval(timer);
  if (process.env.CRASH === 'rejection') void Promise.reject(new Error('boom: rejected'));
  else throw new Error('boom: thrown');
}, 10);
