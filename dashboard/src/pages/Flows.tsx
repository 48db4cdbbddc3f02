export function Flows() {
  return (
    <section>
      <h1>Flows</h1>
    </section>
  );
}
