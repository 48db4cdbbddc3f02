export function Limits() {
  return (
    <section>
      <h1>Limits</h1>
    </section>
  );
}
