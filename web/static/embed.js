// The one script a site includes to get <streamer-player>:
//   <script type="module" src="https://HOST/embed.js"></script>
// An absolute path, so it resolves against HOST wherever the including page is.
export { StreamerPlayer } from "/static/js/element.js";
